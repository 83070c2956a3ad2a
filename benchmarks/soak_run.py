"""Soak test of `pulse run`: many good and bad inputs, killed at random moments, resumed until done.

200 inputs (good LR faces and broken files of every kind the README names) go through `pulse run`, which is
killed ``--kills`` times at random moments (SIGKILL or SIGINT, chosen at random) and rerun each time, then run
to the end. Passes when every good input is done exactly once (one report line per output, its file present
with the recorded sha256), every bad input is named once, the passed-over files are named with -v, no
temp file is left, and the last run exits 1 (some inputs failed) with nothing left to do.

A tiny random generator keeps it fast (the run loop, not the search, is under test); ``--generator`` takes a
real one. Not part of the test suite (a few minutes).

    python benchmarks/soak_run.py [--inputs 200] [--kills 10] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pulse.models.generator_file import gaussian_fit, load_generator, save_generator
from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from pulse.resample import resize

BAD_KINDS = {  # file name suffix -> what makes it bad
    "corrupt.png": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
    "empty.png": lambda p: p.write_bytes(b""),
    "text.jpg": lambda p: p.write_text("not a JPEG"),
    "nonsquare.png": lambda p: Image.new("RGB", (8, 6)).save(p),
    "too_big.png": lambda p: Image.new("RGB", (64, 64)).save(p),
}
PASSED_OVER = {"animation.gif": lambda p: Image.new("RGB", (8, 8)).save(p),
               "scan.tif": lambda p: Image.new("RGB", (8, 8)).save(p)}


def tiny_generator(path: Path) -> Path:
    torch.manual_seed(0)
    g = StyleGAN1Generator(StyleGAN1Config(resolution=32, style_dim=64, mapping_layers=2, channels=[64, 32, 16, 8]))
    save_generator(path, g, gaussian_fit(g.mapping, g.style_dim, samples=20_000),
                   {"name": "soak-tiny", "resolution": 32, "alignment": "ffhq", "licence": "test"})
    return path


def make_inputs(folder: Path, generator: Path, n: int, rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """n files: about 1 in 8 bad, 1 in 40 passed over (not an accepted type), one broken link; the rest faces."""
    g = load_generator(generator).generator
    lr_size = g.resolution // 4
    folder.mkdir(parents=True)
    good, bad, skipped = [], [], []
    for i in range(n):
        roll = rng.random()
        if roll < 0.125:
            kind = rng.choice(sorted(BAD_KINDS))
            name = f"in{i:03d}_{kind}"
            BAD_KINDS[kind](folder / name)
            bad.append(name)
        elif roll < 0.15:
            kind = rng.choice(sorted(PASSED_OVER))
            name = f"in{i:03d}_{kind}"
            PASSED_OVER[kind](folder / name)
            skipped.append(name)
        else:
            with torch.no_grad():
                hr = (g(z=torch.randn(1, g.style_dim, generator=torch.Generator().manual_seed(i))) + 1) / 2
            arr = (resize(hr, lr_size)[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
            name = f"in{i:03d}.png"
            Image.fromarray(np.ascontiguousarray(arr)).save(folder / name)
            good.append(name)
    (folder / "dangling.png").symlink_to(folder / "missing.png")
    skipped.append("dangling.png")
    return good, bad, skipped


def run_pulse(command, kill_after: float | None, sig) -> tuple[int, str]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # even in background
    if kill_after is not None:
        time.sleep(kill_after)
        process.send_signal(sig)
    _, stderr = process.communicate()
    return process.returncode, stderr


def calibrate(command, out: Path) -> tuple[float, float]:
    """Seconds until an uninterrupted run has written its first face, and until it ends: kills land between."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    first = None
    while process.poll() is None:
        if first is None and any(out.glob("in*.png")):
            first = time.perf_counter() - started
        time.sleep(0.05)
    whole = time.perf_counter() - started
    return first or whole, whole


def check(out: Path, inputs: Path, good, bad, skipped, last_stderr: str) -> list[str]:
    problems = []
    lines = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    outputs = [e["output"] for e in lines if e["status"] == "ok"]
    if len(outputs) != len(set(outputs)):
        problems.append(f"{len(outputs) - len(set(outputs))} outputs have more than one report line")
    done = {Path(e["input"]).name for e in lines if e["status"] == "ok"}
    for e in lines:
        if e["status"] == "ok":
            path = out / e["output"]
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != e["sha256"]:
                problems.append(f"{e['output']}: missing or not what its line records")
    if missing := sorted(set(good) - done):
        problems.append(f"{len(missing)} good inputs not done, e.g. {missing[:3]}")
    named = [Path(e["input"]).name for e in lines if e["status"] == "error"]
    if sorted(named) != sorted(bad):
        problems.append(f"bad inputs named {len(named)} times for {len(bad)} bad inputs")
    for name in skipped:
        if name not in last_stderr:
            problems.append(f"{name}: passed over without being named")
    if leftovers := [p.name for p in out.rglob(".*") if p.is_file()]:
        problems.append(f"files left behind: {leftovers[:5]}")
    if sorted(p.name for p in inputs.iterdir() if p.suffix == ".png" and p.name.startswith("in")) != \
            sorted(n for n in good + bad if n.endswith(".png")):
        problems.append("the input folder changed")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generator", help="a generator file (default: a tiny random one, made here)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--keep", help="work in this new folder and keep it (default: a temp folder, removed)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pulse-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    generator = Path(args.generator) if args.generator else tiny_generator(work / "tiny.pt")
    good, bad, skipped = make_inputs(work / "in", generator, args.inputs, rng)
    out = work / "out"
    command = [sys.executable, "-m", "pulse", "run", "--input", str(work / "in"), "--output", str(out),
               "--scale", "4", "--steps", str(args.steps), "--eps", "1", "--batch-size", "4",
               "--generator", str(generator), "--device", "cpu", "-v"]
    print(f"{len(good)} good, {len(bad)} bad, {len(skipped)} passed over; {args.kills} kills; work in {work}")
    calibration = [a if a != str(out) else str(work / "calibration") for a in command]
    first_face, whole = calibrate(calibration, work / "calibration")
    print(f"an uninterrupted run writes its first face after {first_face:.1f} s and ends after {whole:.1f} s; "
          "each run is killed before it could finish")
    for k in range(args.kills):
        sig = rng.choice([signal.SIGKILL, signal.SIGINT])
        after = rng.uniform(0.5 * first_face, first_face + 2 * (whole - first_face) / args.kills)
        code, stderr = run_pulse(command, after, sig)
        lines = len((out / "report.jsonl").read_text().splitlines()) if (out / "report.jsonl").exists() else 0
        print(f"kill {k + 1}: {sig.name} after {after:.1f} s -> exit {code}; report has {lines} lines")
        if sig == signal.SIGINT and code not in (130, 1):
            print(f"  unexpected exit code for Ctrl-C: {stderr[-500:]}")
    code, stderr = run_pulse(command, None, None)
    summary = [line for line in stderr.splitlines() if "processed" in line]
    print(f"final run: exit {code}; {summary[-1] if summary else stderr[-500:]}")
    problems = check(out, work / "in", good, bad, skipped, stderr)
    if code != 1:
        problems.append(f"final exit code {code}, expected 1 (some inputs failed)")
    print("PASS" if not problems else "FAIL:\n  " + "\n  ".join(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
