"""The Python API in a few lines, and the README picture: LR | bicubic | pulse samples, one row per face.

    python examples/upsample_faces.py [--input examples/lr_faces] [--out examples/result_grid.png] [--samples 3]

The faces pulse draws are invented: several samples show how much a 16 px face leaves open.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

import pulse
from pulse.imageio import list_images, load_image, pil_to_tensor, save_image, tensor_to_pil
from pulse.resample import resize


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).parent
    parser.add_argument("--input", default=here / "lr_faces")
    parser.add_argument("--out", default=here / "result_grid.png")
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    upsampler = pulse.Upsampler(device="auto")  # the bundled generator, CUDA when present
    faces = [load_image(p) for p in list_images(args.input)]
    results = upsampler.run(faces, scale=args.scale, samples=args.samples, steps=args.steps, seed=0)

    size = faces[0].width * args.scale
    grid = Image.new("RGB", ((2 + args.samples) * size, len(faces) * size), "white")
    for row, (face, samples) in enumerate(zip(faces, results)):
        bicubic = tensor_to_pil(resize(pil_to_tensor(face)[None], size)[0].clamp(0, 1))
        tiles = [face.resize((size, size), Image.Resampling.NEAREST), bicubic] + [r.image for r in samples]
        for column, tile in enumerate(tiles):
            grid.paste(tile, (column * size, row * size))
        print(", ".join(f"sample {r.sample}: LR-PSNR {r.lr_psnr:.1f} dB, within eps: {r.success}" for r in samples))
    save_image(grid, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
