"""Search speed: seconds per face and faces/s for 16 -> 128 px, 100 steps, at several batch sizes.

Uses the bundled generator when installed, else a random one of the same (default compact) architecture:
speed does not depend on the weights. Prints a markdown table; run it once per device.

    python benchmarks/search_speed.py [--device cpu|cuda] [--batches 1,4,8,16] [--steps 100] [--compile]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from pulse.devices import select_device
from pulse.errors import PulseError
from pulse.models.generator_file import LoadedGenerator, gaussian_fit
from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from pulse.search import options_for, search
from pulse.weights.resolve import open_generator


def model_for(device) -> tuple[LoadedGenerator, str]:
    try:
        from pulse.weights.registry import DEFAULT_GENERATOR

        return open_generator(None, device), DEFAULT_GENERATOR
    except PulseError:
        g = StyleGAN1Generator(StyleGAN1Config()).eval().requires_grad_(False)
        fit = gaussian_fit(g.mapping, g.style_dim, samples=10_000)
        return LoadedGenerator(g, fit["mean"], fit["std"], {}, "random").to(device), "random compact 128 px"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", default="1,4,8,16")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator, as pulse run --compile")
    args = parser.parse_args()
    device = select_device(args.device)
    model, name = model_for(device)
    if args.compile:
        model.compile()
    params = sum(p.numel() for p in model.generator.parameters()) / 1e6
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"generator: {name}, {params:.2f} M parameters, {model.generator.resolution} px; device: {where}; "
          f"{args.steps} steps, 16 -> {model.generator.resolution} px{', compiled' if args.compile else ''}")
    print("| batch | warm-up s | s / face | faces / s | ms / step | peak memory |")
    print("|---:|---:|---:|---:|---:|---:|")
    options = options_for(model, steps=args.steps)  # the generator file's recommended settings
    for batch in map(int, args.batches.split(",")):
        lr = torch.rand(batch, 3, 16, 16)
        t0 = time.perf_counter()
        search(model, lr, seeds=list(range(batch)), options=options_for(model, steps=2))  # warm-up (compile)
        warm_up = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        search(model, lr, seeds=list(range(batch)), options=options)
        if device.type == "cuda":
            torch.cuda.synchronize()
            peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB GPU"
        else:
            peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"
        seconds = time.perf_counter() - t0
        print(f"| {batch} | {warm_up:.1f} | {seconds / batch:.2f} | {batch / seconds:.2f} | {1000 * seconds / args.steps:.0f} | {peak} |",
              flush=True)


if __name__ == "__main__":
    main()
