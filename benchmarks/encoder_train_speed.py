"""What `pulse train-encoder` costs per generated face, and per real face of its LR-consistency term, for a generator
layout (random weights of exactly that layout: the cost does not depend on them; nothing is downloaded), and the
hours a recipe of so many kimg takes at that rate. Also the floating-point operations of each (torch's
FlopCounterMode), from which a device that was not at hand can be estimated.

    python benchmarks/encoder_train_speed.py [--layout stylegan2-f-256] [--steps 3] [--batch 32] [--real-batch 8]
        [--kimg 40] [--real-kimg 10] [--device cpu|cuda]

Layouts: those of benchmarks/official_speed.py, and pulse-compact-128 (the bundled generator's).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from official_speed import LAYOUTS, build  # noqa: E402

from pulse.devices import select_device  # noqa: E402
from pulse.imageio import quantize  # noqa: E402
from pulse.models.generator_file import LoadedGenerator, gaussian_fit  # noqa: E402
from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator  # noqa: E402
from pulse.training.encoder_loop import EncoderTrainConfig, EncoderTrainer, render_lr  # noqa: E402


def flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def timed(step, repeats: int, device) -> float:
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", default="stylegan2-f-256", choices=(*LAYOUTS, "pulse-compact-128"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--real-batch", type=int, default=8)
    parser.add_argument("--scale", type=int, default=None, help="[default: the layout's resolution / 16: 16 px LR]")
    parser.add_argument("--kimg", type=float, default=40.0, help="generated faces of the recipe, thousands")
    parser.add_argument("--real-kimg", type=float, default=10.0, help="of those, the kimg with the real-face term")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = select_device(args.device)
    torch.manual_seed(0)
    generator = (StyleGAN1Generator(StyleGAN1Config()) if args.layout == "pulse-compact-128"
                 else build(args.layout)).eval().requires_grad_(False)
    fit = gaussian_fit(generator.mapping, generator.style_dim, samples=10_000)
    model = LoadedGenerator(generator, fit["mean"], fit["std"], {}, args.layout).to(device)
    scale = args.scale or generator.resolution // 16
    with tempfile.TemporaryDirectory() as out:
        config = EncoderTrainConfig(generator=args.layout, out=out, scale=scale, batch=args.batch, device=device.type)
        trainer = EncoderTrainer(config, model, "0" * 64)
        generated = timed(trainer.train_step, args.steps, device) / args.batch
        real_lr = quantize(torch.rand(args.real_batch, 3, trainer.lr_size, trainer.lr_size, device=device))

        def real_step():
            loss = (render_lr(model, trainer.encoder(real_lr), trainer.lr_size) - real_lr).pow(2).mean()
            loss.backward()

        real = timed(real_step, args.steps, device) / args.real_batch
        generated_flops = flops(trainer.train_step) / args.batch
        real_flops = flops(real_step) / args.real_batch
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip()
        + f", {torch.get_num_threads()} threads")
    hours = (args.kimg * 1000 * generated + args.real_kimg * 1000 * args.real_batch / args.batch * real) / 3600
    print(f"{args.layout} ({generator.resolution} px, x{scale}: {trainer.lr_size} px LR) on {where}")
    teraflops = (args.kimg * 1000 * generated_flops + args.real_kimg * 1000 * args.real_batch / args.batch
                 * real_flops) / 1e12
    print(f"| per generated face | per real face (LR term) | recipe: {args.kimg:g} kimg, real term for the last "
          f"{args.real_kimg:g} ({args.real_batch} real per {args.batch} generated) |")
    print("|---:|---:|---:|")
    print(f"| {1000 * generated:.1f} ms, {generated_flops / 1e9:.1f} GFLOP | {1000 * real:.1f} ms, "
          f"{real_flops / 1e9:.1f} GFLOP | {hours:.2f} h, {teraflops:.0f} TFLOP |")


if __name__ == "__main__":
    main()
