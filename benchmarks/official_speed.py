"""Search cost of the official FFHQ layouts: seconds per face, peak memory and generator file size.

For each layout (StyleGAN2 config F at 256 and 1024 px and StyleGAN-1 FFHQ at 1024 px by default; the names are
those of ``layout`` in weights/registry.toml), a generator of exactly that layout with random weights (speed does
not depend on the weights; nothing is downloaded) runs pulse's search with PULSE's reference settings on a batch
of 8 random 16 x 16 LR faces (PULSE's own input size and the README's examples: x16 to 256 px, x64 to 1024 px)
for --steps steps after a one-step warm-up. Each layout runs in a process of its own, so the peak resident
memory it reports is its own, capped at the memory available when it starts: a batch too big for the machine
fails alone ("out of memory") instead of waking the kernel's OOM killer. Prints a markdown table (seconds per
face for 100 steps, scaled from --steps when shorter; seconds per step; peak RSS; the generator file in float16
and in float32, as conversions write it) and the lines for weights/registry.toml's [cpu_seconds_per_face].

    python benchmarks/official_speed.py [--layouts stylegan2-f-256,stylegan2-f-1024,stylegan1-ffhq-1024]
        [--steps 100] [--batch 8] [--lr-size 16] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

LAYOUTS = ("stylegan2-f-256", "stylegan2-f-512", "stylegan2-f-1024", "stylegan1-ffhq-1024")
DEFAULT_LAYOUTS = "stylegan2-f-256,stylegan2-f-1024,stylegan1-ffhq-1024"


def build(layout: str):
    """A random generator of the layout NVIDIA's FFHQ network has (config F: channel_base 32768, 8 mapping layers)."""
    from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator
    from pulse.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    if layout == "stylegan1-ffhq-1024":
        return StyleGAN1Generator(StyleGAN1Config.official_ffhq())
    return StyleGAN2Generator(StyleGAN2Config.official_ffhq(int(layout.rsplit("-", 1)[1])))


def measure(layout: str, steps: int, batch: int, lr_size: int, device: str) -> dict:
    """One layout, in this process: file sizes, then the timed search."""
    from pulse.models.generator_file import LoadedGenerator, gaussian_fit, save_generator
    from pulse.search import options_for, search

    torch.manual_seed(0)
    generator = build(layout).eval().requires_grad_(False)
    fit = gaussian_fit(generator.mapping, generator.style_dim, samples=10_000)
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        for half in (True, False):
            path = Path(folder) / f"{half}.pt"
            save_generator(path, generator, fit, {}, half=half)
            sizes["fp16" if half else "fp32"] = path.stat().st_size
            path.unlink()
    model = LoadedGenerator(generator, fit["mean"], fit["std"], {}, layout).to(device)
    lr = torch.rand(batch, 3, lr_size, lr_size, generator=torch.Generator().manual_seed(0))
    seeds = list(range(batch))
    search(model, lr, seeds=seeds, options=options_for(model, steps=1))  # warm-up: allocator, thread pool
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    search(model, lr, seeds=seeds, options=options_for(model, steps=steps))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    seconds = time.perf_counter() - start
    parameters = sum(p.numel() for p in generator.parameters())
    return dict(layout=layout, resolution=generator.resolution, parameters=parameters, seconds_per_step=seconds / steps,
                seconds_per_face=seconds / batch * 100 / steps, peak_gib=peak, **sizes)


def _kib(path: str, field: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_one(args) -> None:
    """The child: cap the address space at what is available (CPU runs), measure, print one JSON line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    available, mapped = _kib("/proc/meminfo", "MemAvailable"), _kib("/proc/self/status", "VmSize")
    if args.device == "cpu" and available and mapped:  # address space: what is mapped now plus what is free
        resource.setrlimit(resource.RLIMIT_AS, (mapped + available, mapped + available))
    try:
        result = measure(args.only, args.steps, args.batch, args.lr_size, args.device)
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and "memory" not in str(err).lower():
            raise
        result = dict(layout=args.only, error="out of memory")
    print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default=DEFAULT_LAYOUTS, help=f"comma-separated, of: {', '.join(LAYOUTS)}")
    parser.add_argument("--steps", type=int, default=100, help="search steps (shorter runs are scaled to 100)")
    parser.add_argument("--batch", type=int, default=8, help="faces searched together")
    parser.add_argument("--lr-size", type=int, default=16, help="LR face size in pixels")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one layout, in a child process
    args = parser.parse_args()
    if args.only:
        return run_one(args)
    layouts = args.layouts.split(",")
    unknown = [name for name in layouts if name not in LAYOUTS]
    if unknown:
        parser.error(f"unknown layout {unknown[0]} (known: {', '.join(LAYOUTS)})")
    threads = args.threads or torch.get_num_threads()
    where = f"{args.device}, {threads} threads" + (f" of {os.cpu_count()} cores" if args.device == "cpu" else "")
    shortened = f" (timed over {args.steps} steps, scaled to 100)" if args.steps != 100 else ""
    print(f"random-weight generators of the official layouts; {where}; batch of {args.batch} faces, "
          f"{args.lr_size} px LR, PULSE's reference search settings{shortened}")
    print("| layout | output | parameters | s / face, 100 steps | s / step | peak memory | file fp16 | file fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    measured = {}
    for layout in layouts:
        command = [sys.executable, __file__, "--only", layout, "--steps", str(args.steps), "--batch", str(args.batch),
                   "--lr-size", str(args.lr_size), "--threads", str(args.threads), "--device", args.device]
        child = subprocess.run(command, capture_output=True, text=True)
        lines = child.stdout.strip().splitlines()
        if child.returncode or not lines:
            tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"| {layout} | failed: {tail} |||||||", flush=True)
            continue
        result = json.loads(lines[-1])
        if "error" in result:
            print(f"| {layout} | {result['error']} at batch {args.batch} |||||||", flush=True)
            continue
        measured[layout] = result["seconds_per_face"]
        memory = "GiB GPU" if args.device.startswith("cuda") else "GiB RSS"
        print(f"| {layout} | {result['resolution']} px | {result['parameters'] / 1e6:.1f} M | "
              f"{result['seconds_per_face']:.1f} | {result['seconds_per_step']:.2f} | "
              f"{result['peak_gib']:.2f} {memory} | "
              f"{result['fp16'] / 1e6:.0f} MB | {result['fp32'] / 1e6:.0f} MB |", flush=True)
    if measured and args.device == "cpu":
        print(f"\nfor weights/registry.toml [cpu_seconds_per_face] (what it holds: the project's idle 2-core CPU, "
              f"batch 8; this run: {threads} threads, batch {args.batch}):")
        for layout, seconds in measured.items():
            print(f"{layout} = {seconds:.1f}")


if __name__ == "__main__":
    main()
