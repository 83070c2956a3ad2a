"""How often `--pixelated auto` finds a mosaic's grid, and how often it takes a non-mosaic for one.

For each held-out face (all of both subsets unless --limit): a mosaic of it at a random size (96–256 px) with random
blocks (4–16 px) and offsets, saved losslessly, as JPEG q75 and as JPEG q40: found right, found wrong, or missed
(a miss is an ordinary image: safe); and the face itself, resized, JPEG-compressed at a random quality (5–60), and
as 16 and 32 px LR: any grid found there is a false positive.

    python benchmarks/depixelize_detection.py --data ../shared/data/eval [--limit 100]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from pulse.depixelize import detect_grid
from pulse.imageio import find_images, load_image


def mosaic(image: Image.Image, block: int, x: int, y: int) -> Image.Image:
    """Every block (partial ones at the edges too) filled with its mean colour."""
    rgb = np.asarray(image, dtype=np.float64)
    out = np.empty_like(rgb)
    for top in range(y - block if y else 0, rgb.shape[0], block):
        for left in range(x - block if x else 0, rgb.shape[1], block):
            rows, cols = slice(max(top, 0), top + block), slice(max(left, 0), left + block)
            out[rows, cols] = rgb[rows, cols].mean((0, 1))
    return Image.fromarray(np.round(out).astype(np.uint8))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder of face folders (or of faces)")
    parser.add_argument("--limit", type=int, default=None, help="faces per folder")
    args = parser.parse_args()
    folders = [p for p in sorted(args.data.iterdir()) if p.is_dir()] or [args.data]
    rng = np.random.default_rng(0)
    counts = {kind: {"right": 0, "wrong": 0, "missed": 0} for kind in ("lossless", "JPEG q75", "JPEG q40")}
    plain, false = 0, []
    for folder in folders:
        for path in find_images(folder).images[: args.limit]:
            face = load_image(path)
            size = int(rng.integers(96, 257))
            block = int(rng.integers(4, 17))
            x, y = int(rng.integers(0, block)), int(rng.integers(0, block))
            shown = mosaic(face.resize((size, size), Image.Resampling.BICUBIC), block, x, y)
            for kind, image in (("lossless", shown), ("JPEG q75", jpeg(shown, 75)), ("JPEG q40", jpeg(shown, 40))):
                grid = detect_grid(image).grid
                verdict = "missed" if grid is None else "right" if (grid.block, grid.x, grid.y) == (block, x, y) else "wrong"
                counts[kind][verdict] += 1
            for image in (face, face.resize((size, size), Image.Resampling.BICUBIC),
                          jpeg(face.resize((size, size), Image.Resampling.BICUBIC), int(rng.integers(5, 61))),
                          face.resize((16, 16), Image.Resampling.BICUBIC), face.resize((32, 32), Image.Resampling.BICUBIC)):
                plain += 1
                found = detect_grid(image)
                if found.grid is not None:
                    false.append(f"{path} at {image.size}: {found.reason}")
    for kind, c in counts.items():
        print(f"mosaics, {kind}: {c['right']} found right, {c['wrong']} wrong, {c['missed']} missed "
              f"(of {sum(c.values())})")
    print(f"non-mosaics: {len(false)} false positives of {plain}")
    for line in false:
        print(f"  {line}")


if __name__ == "__main__":
    main()
