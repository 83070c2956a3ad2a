"""Issue #29's rule for shipping an SR network as `srgan`, measured: on the same faces as bicubic, a network
passes only if periodic artefacts (`sr_artifacts.py`: faces above the HR faces' 90th percentile) appear no more
often than on the HR faces + 3 points, sharpness (power above the LR Nyquist frequency, HR = 1) is within 0.6 to
1.3, dlib's same-person share and PSNR are at least bicubic's, and dlib detects a face in at least 97 % of outputs.

With --degraded the same measures are printed for inputs degraded as Real-ESRGAN's training inputs
(`pulse.training.degrade`, one fixed draw per face from --seed and the face's index), the way to compare a
degradation-trained network with a clean-trained one; the rule is judged on clean inputs only.

    python benchmarks/sr_rule.py --data ../shared/data/eval/celebahq256 --data ../shared/data/eval/aaf256 \
        --model weights/pulse-sr-x8.pt [--model B.pt] [--scale 8] [--degraded]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sr_artifacts import periodic_share, sharpness_ratio

from pulse.evaluation import metrics
from pulse.evaluation.evaluate import load_face
from pulse.imageio import find_images, quantize
from pulse.resample import resize
from pulse.training.degrade import degradation_generator, degrade
from pulse.weights.resolve import open_sr_model

GRID_MARGIN, SHARPNESS, DETECTED = 0.03, (0.6, 1.3), 0.97


def measure(outputs: torch.Tensor, hr: torch.Tensor, scale: int, grid_threshold: float) -> dict:
    """The rule's measures of (B, 3, N, N) outputs against their HR faces."""
    same = [metrics.identity_distance(o, h) < metrics.SAME_PERSON_DISTANCE for o, h in zip(outputs, hr)]
    return {"psnr": sum(metrics.psnr(o, h) for o, h in zip(outputs, hr)) / len(hr),
            "same": sum(same) / len(same),
            "detected": sum(map(metrics.detect_face, outputs)) / len(outputs),
            "grid": (periodic_share(outputs, scale) > grid_threshold).float().mean().item(),
            "sharpness": sharpness_ratio(outputs, hr, scale)}


def verdict(scores: dict, bicubic: dict, hr_grid: float) -> str:
    """'passes', or 'fails: ' and the measures that fail, ``hr_grid`` being the HR faces' own grid share."""
    failed = [name for name, ok in [
        ("grid", scores["grid"] <= hr_grid + GRID_MARGIN),
        ("sharpness", SHARPNESS[0] <= scores["sharpness"] <= SHARPNESS[1]),
        ("same person", scores["same"] >= bicubic["same"]), ("PSNR", scores["psnr"] >= bicubic["psnr"]),
        ("detected", scores["detected"] >= DETECTED)] if not ok]
    return "passes" if not failed else "fails: " + ", ".join(failed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, action="append", help="folder of aligned HR faces")
    parser.add_argument("--model", action="append", default=[], help="SR model file or registry name (repeat)")
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--degraded", action="store_true", help="also measure on degraded inputs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degraded inputs")
    args = parser.parse_args()
    models = [open_sr_model(spec, args.scale, "cpu", method=None) for spec in args.model or [None]]
    print("| data | inputs | method | PSNR (dB) | same person | detected | grid | sharpness | rule |\n"
          "|---|---|---|---:|---:|---:|---:|---:|---|")
    for folder in args.data:
        faces = [load_face(path, args.resolution, args.scale) for path in find_images(folder).images]
        hr = torch.stack([face.hr for face in faces])
        hr_periodic = periodic_share(hr, args.scale)
        grid_threshold = hr_periodic.quantile(0.9)
        hr_grid = (hr_periodic > grid_threshold).float().mean().item()  # about 10 %
        inputs = {"clean": torch.stack([face.lr for face in faces])}
        if args.degraded:
            inputs["degraded"] = torch.cat([degrade(face.hr[None], face.lr.shape[-1],
                                                    degradation_generator(args.seed, index))
                                            for index, face in enumerate(faces)])
        for kind, lr in inputs.items():
            bicubic = measure(quantize(resize(lr, args.resolution)), hr, args.scale, grid_threshold)
            rows = [("bicubic", bicubic)]
            for model in models:
                with torch.no_grad():
                    sr = torch.cat([quantize(model.super_resolve(chunk)) for chunk in lr.split(32)])
                rows.append((model.source, measure(sr, hr, args.scale, grid_threshold)))
            for name, s in rows:
                rule = verdict(s, bicubic, hr_grid) if kind == "clean" and name != "bicubic" else ""
                print(f"| {folder.name} ({len(faces)}) | {kind} | {name} | {s['psnr']:.2f} | {s['same']:.0%} | "
                      f"{s['detected']:.1%} | {s['grid']:.0%} | {s['sharpness']:.3f} | {rule} |", flush=True)


if __name__ == "__main__":
    main()
