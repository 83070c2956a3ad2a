"""The README's depixelize picture: mosaic | bicubic of its LR | pulse with the bicubic operator | pulse with the box
operator, one held-out face per row.

Each face is pixelated the way a censoring tool does it (8 px blocks of its mean colour on the 128 px face), then goes
the way `pulse run --input mosaic.png` takes it: the grid is detected, the mosaic reduced to its 16 px LR, and the LR
searched (100 steps, seed 0, the bundled generator) with PULSE's bicubic operator and with the box operator that made
it. Each pulse tile is captioned with its LR-PSNR judged with the box operator (how the mosaic was really made).

    python benchmarks/depixelize_figure.py --data ../shared/data/eval/celebahq256 --faces 4 --out docs/depixelize.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from pulse.api import Upsampler
from pulse.depixelize import detect_grid, reduce_mosaic
from pulse.evaluation.evaluate import load_face
from pulse.imageio import find_images, pil_to_tensor, psnr_from_mse, tensor_to_pil
from pulse.resample import resize
from pulse.sampling import captioned, labelled_grid

BLOCK = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="aligned HR faces")
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/depixelize.png"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    upsampler = Upsampler(device=args.device)
    size = upsampler.resolution
    faces = [load_face(path, size, BLOCK, lr_kernel="box") for path in find_images(args.data).images[: args.faces]]
    mosaics = [tensor_to_pil(face.lr).resize((size, size), Image.Resampling.NEAREST) for face in faces]
    lrs = []
    for mosaic, face in zip(mosaics, faces):
        found = detect_grid(mosaic)
        assert found.grid is not None and found.grid.block == BLOCK, found.reason
        lrs.append(reduce_mosaic(mosaic, found.grid))
        assert torch.allclose(lrs[-1], face.lr, atol=1e-6)
    searched = {kernel: upsampler.run(lrs, scale=BLOCK, degradation=kernel) for kernel in ("bicubic", "box")}

    rows = []
    for i, (mosaic, lr) in enumerate(zip(mosaics, lrs)):
        row = [mosaic, tensor_to_pil(resize(lr, size))]
        for kernel in ("bicubic", "box"):
            result = searched[kernel][i][0]
            mse = float((resize(pil_to_tensor(result.image), lr.shape[-1], "box") - lr).pow(2).mean())
            row.append(captioned(result.image, f"LR-PSNR (box) {psnr_from_mse(mse):.1f} dB"))
            print(f"face {i}, {kernel} operator: LR-PSNR judged with box {psnr_from_mse(mse):.2f} dB")
        rows.append(row)
    labels = [f"mosaic ({BLOCK} px blocks)", "bicubic of its LR", "pulse, bicubic op.", "pulse, box op."]
    grid = labelled_grid(labels, rows, size)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
