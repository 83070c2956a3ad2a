"""Search speed: seconds per face and faces/s for 16 -> 128 px (``--scale 4``: 32 -> 128) at several batch sizes,
from random starts (100 steps) and, with ``--init random,encoder``, from the installed encoder's starts (its
recommended settings, the encoder's own time included), side by side in one run.

Uses the bundled generator when installed, else a random one of the same (default compact) architecture. The
inputs are real faces (``--faces`` of ``--data``, made as `pulse eval` makes them), each batch size working
through all of them: with early stop a face's cost depends on the face, so random inputs would not do.
Prints a markdown table; run it once per device.

    python benchmarks/search_speed.py [--device cpu|cuda] [--batches 1,4,8,16] [--steps 100] [--compile]
    python benchmarks/search_speed.py --batches 1,8 --init random,encoder [--data DIR] [--faces 16] [--encoder FILE]
    python benchmarks/search_speed.py --batches 1,8 --init random,encoder --scale 4
    python benchmarks/search_speed.py --batches 8 --init random,encoder --samples 3

``--samples K`` searches each face K times, as `pulse run --samples K` (from an encoder, samples after the first
start from their own finer style rows: ``SearchOptions.guided_rows``); the seconds and steps are then per sample.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path
from dataclasses import replace

import torch

from pulse.devices import select_device
from pulse.errors import PulseError
from pulse.evaluation.evaluate import load_face
from pulse.imageio import find_images
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


EVAL_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "celebahq256"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", default="1,4,8,16")
    parser.add_argument("--scale", type=int, default=8, help="the LR is the generator's resolution / scale")
    parser.add_argument("--steps", type=int, default=None, help="[default: 100 from random starts, the encoder's "
                                                                  "recommended from its starts]")
    parser.add_argument("--init", default="random", help="random, encoder, or both: random,encoder")
    parser.add_argument("--encoder", default=None, help="encoder file or registry name [default: the installed one]")
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator, as pulse run --compile")
    parser.add_argument("--data", type=Path, default=EVAL_FACES, help="aligned HR faces: the inputs are their LR")
    parser.add_argument("--faces", type=int, default=16, help="how many of them (the first, by name)")
    parser.add_argument("--samples", type=int, default=1, help="outputs per face, as pulse run --samples")
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

        encoder = Upsampler(model, device, encoder=args.encoder).encoder_for(args.scale)
        if encoder is None:
            raise SystemExit(f"no encoder is installed for {name} at x{args.scale}")
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip() if (
        device.type == "cpu") else ""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu}, {torch.get_num_threads()} threads"
    res = model.generator.resolution
    faces = torch.stack([load_face(path, res, args.scale).lr for path in find_images(args.data).images[: args.faces]])
    faces = faces.repeat_interleave(args.samples, 0)  # each face's samples side by side, as pulse run batches them
    sample_of = [k for _ in range(len(faces) // args.samples) for k in range(args.samples)]
    unit = "face" if args.samples == 1 else "sample"
    print(f"generator: {name}, {params:.2f} M parameters, {res} px; device: {where}; {res // args.scale} -> {res} px"
          f"{', compiled' if args.compile else ''}; {len(faces) // args.samples} faces of {args.data.name}"
          f"{f' x {args.samples} samples' if args.samples > 1 else ''}"
          f"{f'; encoder: {Path(encoder.source).name}' if encoder else ''}")
    print(f"| start | steps | early stop | batch | warm-up s | s / {unit} | {unit}s / s | steps / {unit} | "
          "within eps | peak memory |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for batch in map(int, args.batches.split(",")):
        for init in inits:
            given = {} if args.steps is None else {"steps": args.steps}
            defaults = {**model.metadata.get("search_defaults", {}), **(encoder.search_defaults if init == "encoder"
                                                                         else {"steps": 100}), **given}
            options = SearchOptions(**{**defaults, "init": init})
            run = lambda i, lr, opts: search(model, lr, list(range(len(lr))), opts,  # noqa: E731
                                             start=encoder.encode(lr) if init == "encoder" else None,
                                             samples=sample_of[i : i + len(lr)])
            t0 = time.perf_counter()
            run(0, faces[:batch], replace(options, steps=2))  # warm-up (compile)
            warm_up = time.perf_counter() - t0
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            t0, results = time.perf_counter(), []
            for i in range(0, len(faces), batch):
                results += run(i, faces[i : i + batch], options)
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB GPU"
            else:
                peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"
            seconds = time.perf_counter() - t0
            print(f"| {init} | {options.steps} | {'yes' if options.early_stop else 'no'} | {batch} | {warm_up:.1f} | "
                  f"{seconds / len(faces):.2f} | {len(faces) / seconds:.2f} | "
                  f"{sum(r.steps for r in results) / len(results):.1f} | "
                  f"{sum(r.success for r in results)}/{len(results)} | {peak} |", flush=True)

if __name__ == "__main__":
    main()
