"""The README's depixelize table, from the reports `benchmarks/depixelize_eval.sh` wrote: one row per setting and
method (bicubic once per kind of LR), for each subset the share of outputs within eps 2e-3 and 6e-3 (LR MSE judged with the operator that made
the LR), mean LR-PSNR, dlib's detection rate of the outputs and ST-LPIPS to the true face.

    python benchmarks/depixelize_table.py OUT_DIR
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
from pathlib import Path

SUBSETS = ("celebahq256", "aaf256")


def cells(rows: list[dict]) -> str:
    mse = [float(r["lr_mse"]) for r in rows]
    psnr = statistics.fmean(float(r["lr_psnr"]) for r in rows)
    detected = sum(r["face_detected"] == "1" for r in rows)
    lpips = [float(r["lpips"]) for r in rows if r["lpips"]]
    within = " | ".join(f"{sum(m <= eps for m in mse)}/{len(mse)}" for eps in (2e-3, 6e-3))
    return f"{within} | {psnr:.2f} | {detected}/{len(rows)} | " + (f"{statistics.fmean(lpips):.3f}" if lpips else "n/a")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    for subset in SUBSETS:
        runs = sorted(p for p in args.out.glob(f"{subset}_*") if (p / "metrics.csv").is_file())
        if not runs:
            continue
        print(f"\n**{subset}**\n")
        print("| setting | method | within eps 2e-3 | within 6e-3 | LR-PSNR (dB) | dlib detects | ST-LPIPS to HR |")
        print("|---|---|---|---|---|---|---|")
        said = set()  # bicubic's row is the same for every setting with the same LR: said once
        for run in runs:
            rows = list(csv.DictReader((run / "metrics.csv").open()))
            for method in ("bicubic", "pulse"):
                chosen = [r for r in rows if r["method"] == method]
                line = cells(chosen) if chosen else None
                if line and (method, line) not in said:
                    said.add((method, line))
                    made = re.search(r"made ([^;]+);", (run / "summary.md").read_text())
                    setting = f"LR {made.group(1)}" if method == "bicubic" and made else run.name.split("_", 1)[1]
                    print(f"| {setting} | {method} | {line} |")


if __name__ == "__main__":
    main()
