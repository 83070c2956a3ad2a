"""Search speed: seconds per face and faces/s for 16 -> 128 px at several batch sizes, from random starts (100
steps) and, with ``--init random,encoder``, from the installed encoder's starts (its recommended steps, the
encoder's own time included), side by side in one run.

Uses the bundled generator when installed, else a random one of the same (default compact) architecture:
speed does not depend on the weights. Prints a markdown table; run it once per device.

    python benchmarks/search_speed.py [--device cpu|cuda] [--batches 1,4,8,16] [--steps 100] [--compile]
    python benchmarks/search_speed.py --batches 1,8 --init random,encoder
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace

import torch

from pulse.devices import select_device
from pulse.errors import PulseError
from pulse.models.generator_file import LoadedGenerator, gaussian_fit
from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from pulse.search import SearchOptions, search
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
    parser.add_argument("--steps", type=int, default=None, help="[default: 100 from random starts, the encoder's "
                                                                  "recommended from its starts]")
    parser.add_argument("--init", default="random", help="random, encoder, or both: random,encoder")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator, as pulse run --compile")
    args = parser.parse_args()
    device = select_device(args.device)
    model, name = model_for(device)
    if args.compile:
        model.compile()
    params = sum(p.numel() for p in model.generator.parameters()) / 1e6
    inits = args.init.split(",")
    encoder = None
    if "encoder" in inits:
        from pulse.api import Upsampler

        encoder = Upsampler(model, device).encoder_for(8)
        if encoder is None:
            raise SystemExit(f"no encoder is installed for {name} at x8")
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip() if (
        device.type == "cpu") else ""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu}, {torch.get_num_threads()} threads"
    print(f"generator: {name}, {params:.2f} M parameters, {model.generator.resolution} px; device: {where}; "
          f"16 -> {model.generator.resolution} px{', compiled' if args.compile else ''}")
    print("| start | steps | batch | warm-up s | s / face | faces / s | ms / step | peak memory |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for batch in map(int, args.batches.split(",")):
        for init in inits:
            given = {} if args.steps is None else {"steps": args.steps}
            defaults = {**model.metadata.get("search_defaults", {}), **(encoder.search_defaults if init == "encoder"
                                                                         else {"steps": 100}), **given}
            options = SearchOptions(**{**defaults, "init": init})
            lr = torch.rand(batch, 3, 16, 16)
            run = lambda opts: search(model, lr, list(range(batch)), opts,  # noqa: E731
                                      start=encoder.encode(lr) if init == "encoder" else None)
            t0 = time.perf_counter()
            run(replace(options, steps=2))  # warm-up (compile)
            warm_up = time.perf_counter() - t0
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            run(options)
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB GPU"
            else:
                peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"
            seconds = time.perf_counter() - t0
            print(f"| {init} | {options.steps} | {batch} | {warm_up:.1f} | {seconds / batch:.2f} | "
                  f"{batch / seconds:.2f} | "
                  f"{1000 * seconds / options.steps:.0f} | {peak} |", flush=True)


if __name__ == "__main__":
    main()
