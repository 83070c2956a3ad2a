"""FFHQ alignment: from 68 landmarks to the quad, and from the quad to the aligned face.

The generator only knows faces cut out the way FFHQ cut them, so ``align_to_quad`` reproduces FFHQ's
``recreate_aligned_images`` step for step (shrink, crop with border, reflect-pad blurred and median-blended,
QUAD transform at 4x, Lanczos down). The aligned image is a similarity transform of the photo (the FFHQ quad
is a rotated square), so ``photo_to_aligned`` / ``aligned_to_photo`` are exact affine maps and the paste-back
can invert the cut.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ..errors import PulseError
from ..imageio import to_rgb
from .detect import EYE_LEFT, EYE_RIGHT, MIN_SCORE, MOUTH_LEFT, MOUTH_RIGHT, DetectedFace, detect_faces

# Below this the 68 landmarks are guesses, and so is the FFHQ square (at least 4 eye distances wide).
MIN_EYE_DISTANCE = 5.0
# A face given as a box (one dlib cannot find: pixelated, too small) is cut like FFHQ cuts a face whose dlib box
# that is: the FFHQ square is BOX_TO_SQUARE box widths wide, its centre BOX_TO_CENTRE widths above the box's
# (the means over dlib's boxes on aligned CelebA-HQ faces; benchmarks/README.md says how they were measured).
BOX_TO_SQUARE = 1.8
BOX_TO_CENTRE = 0.17
MIN_BOX = 8  # px: a smaller box holds no face worth searching




@dataclass
class AlignedFace:
    """A face cut out FFHQ-style, with the quad it came from so that it can be mapped and pasted back."""

    image: Image.Image  # size x size RGB
    quad: np.ndarray  # (4, 2) corners in the photo: top-left, bottom-left, bottom-right, top-right
    landmarks: np.ndarray  # (68, 2) in the photo
    box: tuple[float, float, float, float]
    score: float

    @property
    def size(self) -> int:
        return self.image.width

    def to_aligned(self, points) -> np.ndarray:
        return photo_to_aligned(points, self.quad, self.size)

    def to_photo(self, points) -> np.ndarray:
        return aligned_to_photo(points, self.quad, self.size)

    def report(self) -> dict:
        return {"size": self.size, "box": [round(v, 2) for v in self.box], "score": round(self.score, 3),
                "quad": np.round(self.quad, 3).tolist(), "landmarks": np.round(self.landmarks, 2).tolist()}


def ffhq_quad(landmarks) -> np.ndarray:
    """FFHQ's oriented crop square from 68 landmarks: corners top-left, bottom-left, bottom-right, top-right."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = lm[EYE_LEFT].mean(0), lm[EYE_RIGHT].mean(0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) / 2 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def scale_quad(quad, scale: float) -> np.ndarray:
    """The same quad in the photo resized by ``scale`` (pixel edges scale, centres sit at +0.5)."""
    return (np.asarray(quad, dtype=np.float64) + 0.5) * scale - 0.5


def axes(quad: np.ndarray) -> np.ndarray:
    """Rows: the aligned image's full x axis and y axis, as vectors in the photo."""
    return np.stack([quad[3] - quad[0], quad[1] - quad[0]])


def aligned_to_photo(points, quad, size: int) -> np.ndarray:
    """Pixel coordinates in a ``size`` px aligned face -> pixel coordinates in the photo."""
    quad = np.asarray(quad, dtype=np.float64)
    return quad[0] + ((np.asarray(points, dtype=np.float64) + 0.5) / size) @ axes(quad)


def photo_to_aligned(points, quad, size: int) -> np.ndarray:
    """Pixel coordinates in the photo -> pixel coordinates in a ``size`` px aligned face."""
    quad = np.asarray(quad, dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) - quad[0]) @ np.linalg.inv(axes(quad)) * size - 0.5


def _gaussian_blur(arr: np.ndarray, sigma: float) -> np.ndarray:
    """FFHQ blurs with scipy.ndimage; without scipy, Pillow's (box-approximated) Gaussian is close enough
    for a blend weight that only feathers padding."""
    try:
        from scipy.ndimage import gaussian_filter
    except ImportError:
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        return np.asarray(img.filter(ImageFilter.GaussianBlur(float(sigma))), dtype=np.float32)
    return gaussian_filter(arr, [sigma, sigma, 0])


def align_to_quad(img: Image.Image, quad, size: int = 1024) -> Image.Image:
    """Cut ``quad`` out of ``img`` as a ``size`` px square, exactly as FFHQ's recreate_aligned_images does."""
    img = to_rgb(img, "photo")
    quad = np.array(quad, dtype=np.float64)
    qsize = np.hypot(*(quad[3] - quad[0]))

    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, img.width),
            min(hi[1] + border, img.height))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise PulseError(f"the face square {np.round(quad).astype(int).tolist()} lies outside the "
                         f"{img.width}x{img.height} photo")
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        quad -= crop[0:2]

    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0), max(hi[0] - img.width + border, 0),
           max(hi[1] - img.height + border, 0))
    if max(pad) > border - 4:  # the square leaves the photo: reflect it, blurred and faded to the median
        pad = np.maximum(pad, max(int(np.rint(qsize * 0.3)), 1))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        y, x, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                          1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
        blur = qsize * 0.02
        arr += (_gaussian_blur(arr, blur) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]

    img = img.transform((4 * size, 4 * size), Image.Transform.QUAD, (quad + 0.5).flatten(),
                        Image.Resampling.BILINEAR)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def align_face(img: Image.Image, face: DetectedFace, size: int = 1024) -> AlignedFace:
    """One detected face, FFHQ-aligned; PulseError if it is too small for its landmarks to mean anything."""
    if face.eye_distance < MIN_EYE_DISTANCE:
        raise PulseError(f"face at {_box_text(face.box)}: eyes {face.eye_distance:.1f} px apart, below the "
                         f"{MIN_EYE_DISTANCE:g} px needed to align it")
    quad = ffhq_quad(face.landmarks)
    return AlignedFace(align_to_quad(img, quad, size), quad, face.landmarks, face.box, face.score)


def parse_face_box(text: str) -> tuple[float, float, float, float]:
    """"x,y,w,h" (the face's left, top, width, height in photo pixels) -> (left, top, right, bottom)."""
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise PulseError(f"face box {text!r}: expected x,y,w,h (four numbers, pixels)") from None
    if min(w, h) < MIN_BOX:
        raise PulseError(f"face box {text!r}: {w:g}x{h:g} px is smaller than {MIN_BOX} px")
    return x, y, x + w, y + h


def box_quad(box) -> np.ndarray:
    """The upright FFHQ square of a face known only by its box (left, top, right, bottom)."""
    left, top, right, bottom = (float(v) for v in box)
    width = (right - left + bottom - top) / 2
    centre = np.array([(left + right) / 2, (top + bottom) / 2 - BOX_TO_CENTRE * width])
    half = BOX_TO_SQUARE * width / 2
    x, y = np.array([half, 0.0]), np.array([0.0, half])
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def align_box(img: Image.Image, box, size: int = 1024) -> AlignedFace:
    """A face the user located by its box, aligned upright by it; it has no landmarks (empty)."""
    quad = box_quad(box)
    return AlignedFace(align_to_quad(img, quad, size), quad, np.zeros((0, 2)), tuple(float(v) for v in box), 1.0)


def align_faces(img: Image.Image, size: int = 1024, largest: bool = False, detector: str = "hog",
                upsample: int = 0, min_score: float = MIN_SCORE, name: str = "photo") -> list[AlignedFace]:
    """Detect and align every face of a photo (or only the largest), largest first.

    Faces too small to align are skipped with a warning naming ``name``; an empty list means no face.
    """
    img = to_rgb(img, name)
    faces = detect_faces(img, detector=detector, upsample=upsample, min_score=min_score, name=name)
    aligned = []
    for face in faces[:1] if largest else faces:
        try:
            aligned.append(align_face(img, face, size))
        except PulseError as err:
            warnings.warn(f"{name}: {err}; skipped")
    return aligned


def _box_text(box) -> str:
    left, top, right, bottom = (round(v) for v in box)
    return f"x {left}-{right}, y {top}-{bottom}"
