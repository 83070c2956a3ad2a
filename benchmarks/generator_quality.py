"""Generator quality without the search: random samples against real faces (pulse.evaluation.generator_metrics).

For each generator (registry name, generator file, or a training checkpoint's G_ema) draws N samples with a
fixed seed and prints FD and KID (×1000) against training faces, KID against the held-out eval faces,
precision/recall, the diversity ratio and the dlib detection rate; optionally a 4×4 grid per generator.
Real-face features are cached (--cache) so that comparing many checkpoints costs only their samples.

    python benchmarks/generator_quality.py pulse-faces-128 runs/x/latest.ckpt [--n 2000] [--grid-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from pulse.evaluation.generator_metrics import image_features, kernel_distance, score_samples
from pulse.imageio import list_images, load_image, pil_to_tensor, save_image
from pulse.resample import resize
from pulse.sampling import image_grid, sample_images
from pulse.training.checkpoint import load_checkpoint
from pulse.training.dataset import ImageDecoder, find_images
from pulse.training.export import checkpoint_generator
from pulse.weights.resolve import open_generator

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def open_any(spec: str):
    """A generator module from a registry name, a generator file or a training checkpoint (its G_ema)."""
    if spec.endswith(".ckpt"):
        checkpoint = load_checkpoint(spec)
        return checkpoint_generator(checkpoint, spec), checkpoint["progress"]["nimg"] / 1000
    model = open_generator(spec)
    return model.generator, model.metadata.get("kimg")


def real_features(kind: str, paths: list[Path], n: int, resolution: int, cache: Path) -> torch.Tensor:
    """Features of ``n`` real faces spread evenly over the sources (training shards or eval folders)."""
    key = hashlib.sha256(json.dumps([kind, [str(p) for p in paths], n, resolution]).encode()).hexdigest()[:16]
    path = cache / f"real-{kind}-{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    if kind == "train":
        sources = find_images(paths)
        picked = [sources[round(i * len(sources) / n)] for i in range(min(n, len(sources)))]
        decoder = ImageDecoder(resolution)
        images = torch.stack([decoder.decode(s)[0] for s in picked]).float() / 255
    else:
        files = [f for p in paths for f in list_images(p)]
        images = torch.stack([resize(pil_to_tensor(load_image(f)), resolution) for f in files]).clamp(0, 1)
    features = image_features(images)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(features, path)
    return features


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("generators", nargs="+")
    parser.add_argument("--n", type=int, default=2000, help="samples per generator, and training faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-data", type=Path, nargs="+", default=[DATA / "faces128"])
    parser.add_argument("--eval-data", type=Path, nargs="+",
                        default=[DATA / "eval" / "celebahq256", DATA / "eval" / "aaf256"])
    parser.add_argument("--no-detect", action="store_true", help="skip the dlib detection rate")
    parser.add_argument("--grid-dir", type=Path, help="write <name>.png, 16 samples (seed 0), per generator")
    parser.add_argument("--json", type=Path, help="append one JSON line per generator here")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "pulse" / "generator_quality")
    args = parser.parse_args()

    print("| generator | kimg | FD | KID×1000 | KID×1000 eval | precision | recall | diversity | detected | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.generators:
        started = time.monotonic()
        generator, kimg = open_any(spec)
        res = generator.resolution
        train = real_features("train", args.train_data, args.n, res, args.cache)
        held_out = real_features("eval", args.eval_data, 0, res, args.cache)
        images = sample_images(generator, args.n, seed=args.seed)
        scores = score_samples(images, train, detect=not args.no_detect)
        kid_eval = kernel_distance(held_out, image_features(images[: 4 * held_out.size(0)]),
                                   subset_size=held_out.size(0))
        seconds = time.monotonic() - started
        detected = "-" if scores.detected is None else f"{100 * scores.detected:.1f} %"
        print(f"| {spec} | {kimg if kimg is not None else '-'} | {scores.fd:.4f} | {1000 * scores.kid:.3f} | "
              f"{1000 * kid_eval:.3f} | {scores.precision:.3f} | {scores.recall:.3f} | {scores.diversity:.3f} | "
              f"{detected} | {seconds:.0f} |", flush=True)
        if args.json:
            with open(args.json, "a") as out:
                out.write(json.dumps({"generator": spec, "kimg": kimg, **scores.as_dict(), "kid_eval": kid_eval,
                                      "n": args.n, "seed": args.seed}) + "\n")
        if args.grid_dir:
            name = Path(spec).stem if spec.endswith((".pt", ".ckpt")) else spec
            if spec.endswith(".ckpt"):
                name = f"{Path(spec).parent.name}-{name}"
            save_image(image_grid(sample_images(generator, 16, seed=0), columns=4), args.grid_dir / f"{name}.png")


if __name__ == "__main__":
    main()
