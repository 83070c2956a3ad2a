"""How far JPEG moves an LR face, as an LR MSE: the least eps a face that explains the clean LR could meet.

For the first faces of each folder: the 16 px LR made like `pulse eval --lr-kernel box` makes it, and the same LR
saved as JPEG at each quality; prints mean, median and largest MSE between them (images in [0, 1]). The README's
eps advice for JPEG'd inputs comes from these numbers.

    python benchmarks/jpeg_lr_noise.py --data ../shared/data/eval --limit 16
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from pulse.evaluation.evaluate import load_face
from pulse.imageio import find_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder of face folders (or of faces)")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--lr-kernel", default="box")
    args = parser.parse_args()
    folders = [p for p in sorted(args.data.iterdir()) if p.is_dir()] or [args.data]
    for folder in folders:
        files = find_images(folder).images[: args.limit]
        clean = [load_face(f, args.resolution, args.scale, args.lr_kernel).lr for f in files]
        for quality in (90, 75, 40, 20):
            mse = [float((load_face(f, args.resolution, args.scale, args.lr_kernel, quality).lr - lr).pow(2).mean())
                   for f, lr in zip(files, clean)]
            print(f"{folder.name}, JPEG q{quality}: LR MSE mean {statistics.fmean(mse):.2e}, median "
                  f"{statistics.median(mse):.2e}, largest {max(mse):.2e} ({len(mse)} faces)")


if __name__ == "__main__":
    main()
