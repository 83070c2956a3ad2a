"""Whole photos: find every face, super-resolve it with the search, paste it into the upscaled photo.

Each face is FFHQ-aligned at the generator's resolution and downscaled with pulse's own ``resize`` to
``resolution // scale`` px: the LR face the search must explain, made the way every LR input is made. The
result (``scale`` x the LR size) goes back through the inverse of the alignment into the photo upscaled
by the same ``scale`` (bicubic), with a feathered edge: by default only the face region the landmarks
outline, so hair, ears and background stay the photo's own. Because the search makes the face downscale to
the LR face, and the bicubic background downscales to the same photo, both agree at low resolution where
they meet; the feather hides the difference in detail.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..api import Upsampler
from ..errors import PulseError
from ..imageio import MAX_PIXELS, pil_to_tensor, tensor_to_pil, to_rgb
from ..resample import resize
from ..upsampling import Result
from .align import AlignedFace, align_box, align_faces, scale_quad
from .detect import MIN_SCORE
from .paste import paste_back

MIN_LR_SIZE = 4  # below this an LR "face" is a few blotches and any face explains it


MASKS = ("face", "square")


MAX_OUTPUT_PIXELS = 4 * MAX_PIXELS


@dataclass
class RestoredFace:
    """One face of a restored photo: where it was, what the search was given, what it returned."""

    aligned: AlignedFace  # at the generator's resolution, cut from the photo
    lr: Image.Image  # what the search had to explain
    result: Result  # image, lr_mse, lr_psnr, success, seed
    quad_scaled: np.ndarray  # where it was pasted in the upscaled photo

    def report(self) -> dict:
        return {**self.aligned.report(), "lr_size": self.lr.width,
                "quad_scaled": np.round(self.quad_scaled, 3).tolist(), "lr_mse": self.result.lr_mse,
                "lr_psnr": round(self.result.lr_psnr, 3), "success": self.result.success, "seed": self.result.seed}


@dataclass
class RestoredPhoto:
    """A restored photo, its plain upscale (for before/after comparisons) and its faces."""

    image: Image.Image  # the photo x scale with the faces pasted in
    upscaled: Image.Image  # the same photo x scale by bicubic alone
    faces: list[RestoredFace]  # empty: no face found, ``image`` is the plain upscale


def upscale_photo(photo: Image.Image, scale: int) -> Image.Image:
    """The background: plain bicubic, the interpolating member of the family pulse downscales with."""
    return photo.resize((photo.width * scale, photo.height * scale), Image.Resampling.BICUBIC)


def lr_size_for(resolution: int, scale: int) -> int:
    """The LR face size a generator of ``resolution`` px can enlarge ``scale`` times."""
    if scale < 1:
        raise PulseError(f"scale must be a whole number >= 1, got {scale}")
    lr = resolution // scale
    if lr < MIN_LR_SIZE:
        raise PulseError(f"scale {scale} leaves {lr} px faces for the {resolution} px generator; the least is "
                         f"{MIN_LR_SIZE} px, so use a scale of at most {resolution // MIN_LR_SIZE}")
    return lr


def restore(photo: Image.Image, scale: int = 8, upsampler=None, seed: int = 0, feather: float = 0.1,
            mask: str = "face", detector: str = "hog", upsample: int = 0, min_score: float = MIN_SCORE,
            name: str = "photo", face_boxes=(), **search_options) -> RestoredPhoto:
    """Enlarge a photo ``scale`` times, replacing every detected face by a PULSE reconstruction.

    ``upsampler`` is a ``pulse.Upsampler`` (default: the bundled generator), a ``FeedForwardUpsampler``
    (srresnet, srgan), or anything with the same ``resolution`` and ``run(images, scale=, samples=, seed=,
    **options)``. Search keywords (steps, eps, loss, ...) go to ``run``. ``mask``: "face" replaces the face region the landmarks outline (the photo keeps
    its hair and background), "square" the whole aligned square. Faces too small to align are skipped, and
    a photo without a face is only upscaled, each with a warning naming ``name``. ``face_boxes``: faces the user
    located, (left, top, right, bottom) each, used instead of detection (for a face dlib cannot find, such as a
    pixelated one); they are aligned upright by their box, and having no landmarks they replace their whole square.
    """
    if mask not in MASKS:
        raise PulseError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
    photo = to_rgb(photo, name)
    upsampler = Upsampler() if upsampler is None else upsampler
    lr_size = lr_size_for(upsampler.resolution, scale)
    if photo.width * photo.height * scale * scale > MAX_OUTPUT_PIXELS:
        raise PulseError(f"{name}: {photo.width}x{photo.height} x{scale} = {photo.width * scale}x"
                         f"{photo.height * scale} is more than {MAX_OUTPUT_PIXELS} pixels; crop the photo "
                         "or lower the scale")
    if face_boxes:
        aligned = [align_box(photo, box, upsampler.resolution) for box in face_boxes]
    else:
        aligned = align_faces(photo, upsampler.resolution, detector=detector, upsample=upsample, min_score=min_score,
                              name=name)
    upscaled = upscale_photo(photo, scale)
    if not aligned:
        warnings.warn(f"{name}: no face found; upscaled plainly")
        return RestoredPhoto(upscaled, upscaled, [])
    lrs = [tensor_to_pil(resize(pil_to_tensor(face.image), lr_size)) for face in aligned]
    results = upsampler.run(lrs, scale=scale, samples=1, seed=seed, **search_options)
    image, faces = upscaled, []
    for face, lr, (result,) in zip(aligned, lrs, results):
        quad = scale_quad(face.quad, scale)
        # the landmarks as fractions of the face's side (pixel centres sit half a pixel in)
        landmarks = (face.to_aligned(face.landmarks) + 0.5) / face.size if mask == "face" and len(face.landmarks) else None
        image = paste_back(image, result.image, quad, feather, landmarks)
        faces.append(RestoredFace(face, lr, result, quad))
    return RestoredPhoto(image, upscaled, faces)


def before_after(before: Image.Image, after: Image.Image) -> Image.Image:
    """Two equal-size pictures side by side."""
    grid = Image.new("RGB", (before.width + after.width, max(before.height, after.height)), "white")
    grid.paste(before, (0, 0))
    grid.paste(after, (before.width, 0))
    return grid
