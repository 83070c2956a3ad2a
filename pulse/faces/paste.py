"""Putting an aligned face back into its photo: inverse warp, feathered square, face-region mask."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import PulseError
from ..imageio import pil_to_tensor, to_rgb
from ..resample import resize
from .align import axes


def feather_mask(size: int, feather: float) -> np.ndarray:
    """A size x size weight: 0 on the outermost pixels, rising to 1 over ``feather`` x size (at least 1 px)."""
    centres = np.arange(size) + 0.5
    to_edge = np.minimum(centres, size - centres)
    distance = np.minimum.outer(to_edge, to_edge)
    return np.clip((distance - 0.5) / max(feather * size, 1.0), 0.0, 1.0).astype(np.float32)


FOREHEAD = 0.35  # how far above the brows the face region reaches, as a share of the brows-to-chin distance


MASK_SUPERSAMPLE = 4


def face_region_mask(landmarks, size: int, feather: float) -> np.ndarray:
    """A size x size weight covering the face itself: inside the jaw line, up to a forehead above the brows,
    fading out over ``feather`` x size. Pasting through it replaces the face but keeps the photo's own hair,
    ears, neck and background (GFPGAN pastes a face-parsing mask for the same reason; the 68 landmarks give
    the region without another network). ``landmarks``: dlib's 68 points as fractions of the face's side
    (0: its left or top edge, 1: its right or bottom edge), so one set serves a face of any size."""
    points = np.asarray(landmarks, dtype=np.float64)
    jaw, brows, chin = points[0:17], points[17:27], points[8]
    forehead = brows[::-1] + FOREHEAD * (brows.mean(0) - chin)  # right to left, so the outline closes
    outline = np.concatenate([jaw, forehead]) * size * MASK_SUPERSAMPLE
    canvas = Image.new("L", (size * MASK_SUPERSAMPLE,) * 2, 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in outline], fill=255)
    region = canvas.resize((size, size), Image.Resampling.BOX)
    if feather > 0:
        region = region.filter(ImageFilter.GaussianBlur(feather * size / 2))
    return np.asarray(region, dtype=np.float32) / 255


def paste_back(photo: Image.Image, face_image: Image.Image, quad, feather: float = 0.1,
               landmarks=None) -> Image.Image:
    """Put an aligned face (any size) back into ``photo`` where ``quad`` (photo pixels) says it was cut.

    The face fades in over ``feather`` x its side, so no seam shows; pixels whose centres lie outside the
    quad are never touched. With ``landmarks`` (dlib's 68 as fractions of the face's side) only the face
    region is replaced (``face_region_mask``), else the whole square. Use ``scale_quad`` when ``photo`` is an
    upscaled copy of the photo aligned from.
    """
    if face_image.width != face_image.height:
        raise PulseError(f"face image must be square to paste back, got {face_image.width}x{face_image.height}")
    photo = to_rgb(photo, "photo")
    face = pil_to_tensor(to_rgb(face_image, "face"))
    quad = np.asarray(quad, dtype=np.float64)
    side = np.hypot(*(quad[3] - quad[0]))
    if face.shape[-1] > side:  # shrink first with the antialiased operator; the warp below only interpolates
        face = resize(face, max(int(np.ceil(side)), 1))
    size = face.shape[-1]

    edges = quad + 0.5
    x0, y0 = np.maximum(np.floor(edges.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(edges.max(0)).astype(int), photo.size)
    if x1 <= x0 or y1 <= y0:
        return photo.copy()
    # patch coordinates (pixel edges) -> face coordinates: face = inv @ (patch + (x0, y0) - top-left corner)
    inv = np.linalg.inv(axes(quad)).T * size
    shift = -inv @ (edges[0] - (x0, y0))
    data = (inv[0, 0], inv[0, 1], shift[0], inv[1, 0], inv[1, 1], shift[1])
    patch_size = (int(x1 - x0), int(y1 - y0))
    patch = np.stack([_warp(channel, patch_size, data, Image.Resampling.BICUBIC)
                      for channel in face.mul(255).numpy()], -1)
    weight = feather_mask(size, feather)
    if landmarks is not None:
        weight = np.minimum(weight, face_region_mask(landmarks, size, feather))
    alpha = _warp(weight, patch_size, data, Image.Resampling.BILINEAR)

    region = np.asarray(photo.crop((x0, y0, x1, y1)), dtype=np.float32)
    blended = region + (patch - region) * alpha[..., None]
    out = photo.copy()
    out.paste(Image.fromarray(np.uint8(np.clip(np.rint(blended), 0, 255)), "RGB"), (int(x0), int(y0)))
    return out


def _warp(channel: np.ndarray, size: tuple[int, int], affine: tuple, resample) -> np.ndarray:
    """Pillow's affine warp on float data: its 8-bit warps truncate, darkening by half a level on average."""
    warped = Image.fromarray(np.asarray(channel, dtype=np.float32), "F").transform(
        size, Image.Transform.AFFINE, affine, resample)
    return np.asarray(warped, dtype=np.float32)
