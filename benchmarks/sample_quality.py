"""How often a generator's random samples look like a face to dlib: the bundled generator's headline check.

Draws N random faces (fixed seed), runs dlib's frontal face detector on each (pulse.evaluation.metrics.detect_face, the
same test `pulse eval` uses) and prints the share found, plus a grid of the first 16.

    python benchmarks/sample_quality.py [--generator pulse-faces-128] [--n 256] [--seed 0] [--grid FILE]
"""

from __future__ import annotations

import argparse

from pulse.evaluation.metrics import detect_face
from pulse.imageio import save_image
from pulse.sampling import image_grid, sample_images
from pulse.weights.registry import DEFAULT_GENERATOR
from pulse.weights.resolve import open_generator


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default=DEFAULT_GENERATOR)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", help="also write a 4x4 grid of the first 16 samples here")
    args = parser.parse_args()
    model = open_generator(args.generator)
    images = sample_images(model.generator, args.n, seed=args.seed)
    found = sum(detect_face(img) for img in images)
    print(f"{args.generator}: dlib finds a face in {found}/{args.n} random samples ({100 * found / args.n:.1f} %), "
          f"seed {args.seed}")
    if args.grid:
        save_image(image_grid(images[:16], columns=4), args.grid)
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()
