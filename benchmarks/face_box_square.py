"""Where FFHQ's square sits relative to dlib's face box: the constants of ``faces.align.box_quad`` (--face-box).

On aligned faces, detects each face with dlib (HOG), computes its FFHQ square from the 68 landmarks, and prints the
square's side in box widths and its centre's offset from the box's centre (x right, y down) in box widths: mean and
standard deviation over the faces found.

    python benchmarks/face_box_square.py --data ../shared/data/eval/celebahq256 --limit 40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pulse.faces.align import ffhq_quad
from pulse.faces.detect import detect_faces
from pulse.imageio import find_images, load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args()
    rows = []
    for path in find_images(args.data).images[: args.limit]:
        faces = detect_faces(load_image(path))
        if not faces:
            continue
        face = max(faces, key=lambda f: f.box[2] - f.box[0])
        left, top, right, bottom = face.box
        quad = ffhq_quad(face.landmarks)
        width, centre = right - left, quad.mean(0)
        rows.append([np.hypot(*(quad[3] - quad[0])) / width, (centre[0] - (left + right) / 2) / width,
                     (centre[1] - (top + bottom) / 2) / width])
    rows = np.array(rows)
    for name, mean, std in zip(("side / box width", "centre x offset / width", "centre y offset / width"),
                               rows.mean(0), rows.std(0)):
        print(f"{name}: {mean:.3f} ± {std:.3f}")
    print(f"{len(rows)} faces found by dlib")


if __name__ == "__main__":
    main()
