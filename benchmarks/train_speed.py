"""Training speed: images per second of `pulse train` at 128 px with the default compact config.

Times whole training steps (G step, D step, EMA; the lazy R1 penalty on every 16th) on synthetic faces
written to a temp folder (speed does not depend on the pixels), after warm-up steps. A short window on a slow
device may hold no R1 step: the figure is then a few per cent optimistic. Run it once per device.

    python benchmarks/train_speed.py [--device auto|cpu|cuda] [--batch 32] [--seconds 20] [--resolution 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pulse.training.config import TrainConfig
from pulse.training.loop import R1_INTERVAL, Trainer


def synthetic_faces(folder: Path, count: int, size: int):
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"face{i:03d}.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0, help="time steps for at least this long")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing (the first one has R1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_faces(Path(tmp), 64, args.resolution)
        config = TrainConfig(data=[tmp], out=tmp, resolution=args.resolution, batch=args.batch,
                             grad_accum=args.grad_accum, device=args.device)
        trainer = Trainer(config)
        device = trainer.device
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        where = (torch.cuda.get_device_name(device) if device.type == "cuda"
                 else f"CPU, {torch.get_num_threads()} threads")
        g_params = sum(p.numel() for p in trainer.G.parameters()) / 1e6
        d_params = sum(p.numel() for p in trainer.D.parameters()) / 1e6
        print(f"{args.resolution} px, channels {','.join(map(str, config.channels))}, G {g_params:.2f} M, "
              f"D {d_params:.2f} M parameters; batch {args.batch} x accum {args.grad_accum}; device: {where}"
              f"{', bf16 autocast' if trainer.amp else ''}")
        for _ in range(args.warmup):
            trainer.train_step()
        sync()
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            trainer.train_step()
            steps += 1
            if steps % 8 == 0:
                sync()  # keep the queue short so the clock sees finished work
        sync()
        seconds = time.perf_counter() - started
        with_r1 = sum(1 for step in range(args.warmup, args.warmup + steps) if step % R1_INTERVAL == 0)
        print(f"{steps * args.batch / seconds:.1f} img/s ({steps} steps, {with_r1} with R1, in {seconds:.1f} s, "
              f"{1000 * seconds / steps:.0f} ms/step)")


if __name__ == "__main__":
    main()
