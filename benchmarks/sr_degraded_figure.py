"""The model card's picture of the network for degraded inputs: LR | bicubic | the clean-trained network | the
degradation-trained one | HR, each face twice: its clean bicubic LR, then the LR `pulse eval --degraded` makes of
it (the same fixed draw per face). Each network tile is captioned with its PSNR to the true face.

    python benchmarks/sr_degraded_figure.py --data ../shared/data/eval/celebahq256 --out docs/sr_degraded_grid.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from pulse.evaluation.evaluate import bicubic_output, load_face
from pulse.evaluation.metrics import psnr
from pulse.imageio import find_images, pil_to_tensor, tensor_to_pil
from pulse.sampling import captioned, labelled_grid
from pulse.training.degrade import degradation_generator
from pulse.weights.resolve import open_sr_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="aligned HR faces")
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--clean", default="pulse-sr-x8", help="the network trained on clean inputs")
    parser.add_argument("--degraded", default="pulse-sr-x8-degraded", help="the one trained on degraded inputs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the degraded inputs (as pulse eval --seed)")
    parser.add_argument("--out", type=Path, default=Path("docs/sr_degraded_grid.png"))
    args = parser.parse_args()

    networks = [open_sr_model(name, args.scale, method=None) for name in (args.clean, args.degraded)]
    size = int(networks[0].metadata["hr_size"])
    rows = []
    for index, path in enumerate(find_images(args.data).images[: args.faces]):
        clean = load_face(path, size, args.scale)
        degraded = load_face(path, size, args.scale, degradation=degradation_generator(args.seed, index))
        for kind, face in (("clean", clean), ("degraded", degraded)):
            row = [tensor_to_pil(face.lr).resize((size, size), Image.Resampling.NEAREST),
                   tensor_to_pil(bicubic_output(face, size).image)]
            for network in networks:
                out = network.super_resolve(face.lr[None])[0]
                score = psnr(out, face.hr)
                row.append(captioned(tensor_to_pil(out), f"{score:.2f} dB"))
                print(f"{path.name} {kind} {Path(network.source).name}: PSNR {score:.2f} dB")
            rows.append(row + [tensor_to_pil(face.hr)])
    labels = [f"LR {size // args.scale} px", "bicubic", args.clean, args.degraded, "HR"]
    grid = labelled_grid(labels, rows, size)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
