"""Faces fixtures: dlib's 68-landmark model, the astronaut's face and photos made from it, and geometry helpers
(as fixtures that return the function) shared by the detect, align, paste and restore tests.

The landmark model comes from face-recognition-models, part of the test extra: without it the tests that need
it fail with what to install; they do not skip. The geometry tests never need it.
"""

import numpy as np
import pytest
from PIL import Image

from pulse.faces import detect
from pulse.faces.detect import detect_faces
from pulse.files import installed_package_file


def _smooth_pattern(width, height, seed=0):
    """A smooth colourful image: every region distinct, nothing finer than interpolation can follow."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.02, 0.06), rng.uniform(0.02, 0.06), rng.uniform(0, 6)
        channels.append(0.5 + 0.2 * np.sin(fx * x + phase) + 0.2 * np.cos(fy * y + 0.01 * x * (1 + phase)))
    return Image.fromarray(np.uint8(np.clip(np.stack(channels, -1), 0, 1) * 255 + 0.5), "RGB")


def _rotated_square(centre, side, degrees):
    """An FFHQ-ordered quad (top-left, bottom-left, bottom-right, top-right) turned by ``degrees``."""
    t = np.deg2rad(degrees)
    x = np.array([np.cos(t), np.sin(t)]) * side / 2
    y = np.array([-np.sin(t), np.cos(t)]) * side / 2
    c = np.asarray(centre, dtype=np.float64)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _inside_quad(quad, width, height):
    """Which pixel centres lie inside the quad (cross products; independent of pulse's affine maps)."""
    y, x = np.mgrid[:height, :width].astype(np.float64)
    inside = np.ones((height, width), bool)
    for a, b in zip(quad, np.roll(quad, -1, axis=0)):  # top-left -> bottom-left -> ... runs one way round
        inside &= (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]) <= 0
    return inside


def _eye_centres(landmarks):
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0)])


@pytest.fixture(scope="session")
def smooth_pattern():
    """smooth_pattern(width, height, seed=0): a smooth colourful PIL image."""
    return _smooth_pattern


@pytest.fixture(scope="session")
def rotated_square():
    """rotated_square(centre, side, degrees): an FFHQ-ordered quad turned by ``degrees``."""
    return _rotated_square


@pytest.fixture(scope="session")
def inside_quad():
    """inside_quad(quad, width, height): which pixel centres lie inside the quad."""
    return _inside_quad


@pytest.fixture(scope="session")
def eye_centres():
    """eye_centres(landmarks): the two eye centres of 68 dlib landmarks."""
    return _eye_centres


@pytest.fixture(scope="session")
def landmark_model(fail_missing_test_extra):
    """Path of dlib's 68-landmark model, installed by face-recognition-models (part of the test extra)."""
    path = installed_package_file("face_recognition_models", f"models/{detect.LANDMARK_MODEL}")
    if path is None:
        fail_missing_test_extra("face-recognition-models", "dlib's 68-landmark model not found")
    return path


@pytest.fixture(scope="session")
def astronaut_face(astronaut, landmark_model):
    """The astronaut's face, as detected (box, score, 68 landmarks)."""
    (face,) = detect_faces(astronaut)
    return face


@pytest.fixture(scope="session")
def two_faces(astronaut):
    """The astronaut and, smaller, her mirror image, side by side."""
    photo = Image.new("RGB", (960, 512), "white")
    photo.paste(astronaut, (0, 0))
    photo.paste(astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((420, 420)), (520, 60))
    return photo


@pytest.fixture(scope="session")
def photos(astronaut, tmp_path_factory):
    """Photos in the forms users have them, plus two that must fail."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut.save(folder / "a_plain.png")
    astronaut.convert("CMYK").save(folder / "b_cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the pixels are stored turned counter-clockwise
    astronaut.transpose(Image.Transpose.ROTATE_90).save(folder / "c_exif.jpg", quality=95, exif=exif)
    astronaut.convert("L").save(folder / "d_grey.png")
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(folder / "e_rgba.png")
    _smooth_pattern(300, 200).save(folder / "x_noface.png")
    (folder / "x_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return folder
