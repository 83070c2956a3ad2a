"""Search speed against the reference loop: faces/s, ms/step, TFLOP/s and peak memory, with equal quality.

For each architecture (the bundled 128 px generator, or a random one of its layout; the official FFHQ
StyleGAN-1 1024 layout with random weights: speed does not depend on the weights) it times

- the reference: a faithful copy of PULSE's loop — one face at a time, fp32, eager, a host sync per step
  (``if loss < min_loss``), best tracked on the summed loss;
- pulse's batched search at each batch size, fp32 and bf16 autocast, eager and (``--compile``) compiled;

on the same LR faces (made by the generator itself, so they can be matched), and prints a markdown table
plus the headline ratio: pulse's best faces/s over the reference's, with the LR-PSNR difference.

    python benchmarks/gpu_speed.py [--device cuda] [--arch compact128,ffhq1024] [--batches 1,4,16,64]
                                   [--steps 100] [--compile] [--reference-faces 4]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pulse.api import select_device
from pulse.errors import PulseError
from pulse.generator import Generator, GeneratorConfig, LoadedGenerator, gaussian_fit, load_generator
from pulse.losses import geocross
from pulse.resample import resize
from pulse.search import SearchOptions, lr_factor, psnr_from_mse, search

PEAK_TFLOPS = {"H100": {"fp32": 67.0, "bf16": 989.0}, "H200": {"fp32": 67.0, "bf16": 989.0},
               "A100": {"fp32": 19.5, "bf16": 312.0}}  # dense, SXM; fp32 without TF32
LR_SIZE = {128: 16, 1024: 32}


def build(arch: str, device) -> LoadedGenerator:
    if arch == "compact128":
        try:
            from pulse.weights import DEFAULT_GENERATOR, resolve_generator

            return load_generator(resolve_generator(DEFAULT_GENERATOR), device)
        except PulseError:
            config = GeneratorConfig()
    else:
        config = GeneratorConfig.official_ffhq()
    g = Generator(config).to(device).eval().requires_grad_(False)
    g.synthesis.torgb.weight.mul_(0.15)  # random weights: bring images into [0, 1] like a trained generator's
    fit = gaussian_fit(g.mapping, g.style_dim, samples=20_000, chunk=5_000, device=device)
    return LoadedGenerator(g, fit["mean"], fit["std"], {}, f"random {arch}").to(device)


def targets(model: LoadedGenerator, n: int, device) -> torch.Tensor:
    g = model.generator
    rng = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        z = torch.randn(n, g.style_dim, generator=rng).to(device)
        hr = (g(z=z, noise=g.random_noise(n, rng, device)) + 1) / 2
    return torch.round(resize(hr, LR_SIZE[g.resolution]).clamp(0, 1) * 255) / 255


def reference_face(model: LoadedGenerator, lr: torch.Tensor, steps: int, seed: int, eps: float = 2e-3):
    """PULSE's loop for one face (batch 1), as the reference implementation runs it."""
    g = model.generator
    torch.manual_seed(seed)
    latent = torch.randn(1, g.n_styles, g.style_dim, device=lr.device, requires_grad=True)
    noise, trainable = [], []
    for i, (h, w) in enumerate(g.noise_shapes()):
        if i == len(g.noise_shapes()) - 1:
            noise.append(torch.zeros(1, 1, h, w, device=lr.device))
        else:
            maps = torch.randn(1, 1, h, w, device=lr.device, requires_grad=i < 5)
            noise.append(maps)
            if i < 5:
                trainable.append(maps)
    params = [latent] + trainable
    radii = [(p.pow(2).sum(tuple(range(2, p.ndim)), keepdim=True) + 1e-9).sqrt().detach() for p in params]
    opt = torch.optim.Adam(params, lr=0.4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps))
    min_loss, best = float("inf"), None
    for _ in range(steps):
        opt.zero_grad()
        ws = F.leaky_relu(latent * model.std + model.mean, 0.2)
        image = (g.synthesis(ws, noise) + 1) / 2
        l2 = (resize(image, lr.shape[-1]) - lr).pow(2).mean((1, 2, 3)).clamp(min=eps).sum()
        loss = 100 * l2 + 0.05 * geocross(ws).sum()
        if loss < min_loss:  # the host sync the reference pays every step
            min_loss, best = loss.item(), image.detach().clone()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p, r in zip(params, radii):
                p.mul_(r / (p.pow(2).sum(tuple(range(2, p.ndim)), keepdim=True) + 1e-9).sqrt())
        sched.step()
    best = torch.round(best.clamp(0, 1) * 255) / 255
    return float((resize(best, lr.shape[-1]) - lr).pow(2).mean())


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return out, time.perf_counter() - t0, peak


def step_flops(model: LoadedGenerator, batch: int, device) -> float:
    """FLOPs of one search step (forward + backward) at ``batch``, counted by torch."""
    g = model.generator
    ws = torch.randn(batch, g.n_styles, g.style_dim, device=device, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        g.synthesis(ws, g.random_noise(batch, device=device)).sum().backward()
    return counter.get_total_flops()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default="compact128,ffhq1024")
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd synthesis")
    parser.add_argument("--reference-faces", type=int, default=4)
    args = parser.parse_args()
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"device: {name}; torch {torch.__version__}; {args.steps} steps; {time.strftime('%Y-%m-%d')}")
    for arch in args.arch.split(","):
        model = build(arch, device)
        g = model.generator
        batches = [int(b) for b in args.batches.split(",")]
        lr_all = targets(model, max(batches + [args.reference_faces]), device)
        print(f"\n## {arch}: {model.source}, {sum(p.numel() for p in g.parameters()) / 1e6:.1f} M parameters, "
              f"{LR_SIZE[g.resolution]} -> {g.resolution} px")

        n_ref = args.reference_faces
        reference_face(model, lr_all[:1], 2, seed=0)  # warm-up
        mses, seconds, mem = timed(lambda: [reference_face(model, lr_all[i : i + 1], args.steps, seed=i)
                                           for i in range(n_ref)], device)
        ref_fps, ref_psnr = n_ref / seconds, sum(psnr_from_mse(m) for m in mses) / n_ref
        print(f"reference loop: {ref_fps:.3f} faces/s, {1000 * seconds / (n_ref * args.steps):.1f} ms/step, "
              f"mean LR-PSNR {ref_psnr:.2f} dB, peak {mem:.2f} GiB")
        print("| batch | precision | compiled | faces/s | ms/step | TFLOP/s | % of peak | peak GiB | LR-PSNR dB |")
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
        best = (0.0, 0.0)
        flops = {batch: step_flops(model, batch, device) for batch in batches}  # counted on the eager module
        eager_synthesis = g.synthesis
        for compiled in [False, True] if args.compile else [False]:
            g.synthesis = torch.compile(eager_synthesis) if compiled else eager_synthesis
            for precision in ("fp32", "bf16"):
                for batch in batches:
                    lr = lr_all[:batch]
                    # eps_margin 0: the reference's objective, so the LR-PSNR comparison is like for like
                    options = SearchOptions(steps=args.steps, precision=precision, eps_margin=0)
                    try:
                        search(model, lr, list(range(batch)), SearchOptions(steps=2, precision=precision))
                        results, seconds, mem = timed(lambda: search(model, lr, list(range(batch)), options), device)
                    except torch.cuda.OutOfMemoryError:
                        print(f"| {batch} | {precision} | {compiled} | out of memory |")
                        torch.cuda.empty_cache()
                        continue
                    fps = batch / seconds
                    psnr = sum(r.lr_psnr for r in results) / batch
                    tflops = flops[batch] * args.steps / seconds / 1e12
                    share = f"{100 * tflops / peak[precision]:.1f}" if peak else "n/a"
                    print(f"| {batch} | {precision} | {compiled} | {fps:.2f} | {1000 * seconds / args.steps:.1f} | "
                          f"{tflops:.2f} | {share} | {mem:.2f} | {psnr:.2f} |", flush=True)
                    if fps > best[0]:
                        best = (fps, psnr)
        g.synthesis = eager_synthesis
        print(f"headline ({arch}): {best[0] / ref_fps:.1f}x the reference loop's faces/s; "
              f"LR-PSNR {best[1] - ref_psnr:+.2f} dB vs the reference")


if __name__ == "__main__":
    main()
