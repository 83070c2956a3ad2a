"""Face detection: the landmark model's install hint, sideways and rolled photos, huge photos."""

import numpy as np
import pytest
from PIL import Image

from pulse.errors import PulseError
from pulse.faces import detect
from pulse.faces.align import align_face
from pulse.faces.detect import detect_faces
from pulse.imageio import psnr_from_mse


def test_missing_landmark_model_says_how_to_get_it(monkeypatch):
    def unavailable(name):
        raise PulseError(f"{name}: not downloaded")

    monkeypatch.setattr(detect, "installed_package_file", lambda package, relative: None)
    monkeypatch.setattr(detect, "resolve_file", unavailable)
    with pytest.raises(PulseError) as err:
        detect.landmark_model_path()
    message = str(err.value)
    assert "pip install" in message and "pulse weights download dlib-68-landmarks" in message
    assert "\n" not in message


@pytest.mark.usefixtures("landmark_model")
def test_turned_photos_sideways_and_rolled(astronaut, astronaut_face, eye_centres):
    # sideways (no EXIF): found by turning the photo, landmarks mapped back to the sideways photo
    (side,) = detect_faces(astronaut.transpose(Image.Transpose.ROTATE_90))
    x, y = astronaut_face.landmarks.T
    assert np.abs(side.landmarks - np.stack([y, astronaut.width - 1 - x], 1)).mean() < 2.0
    # rolled 25 degrees: the aligned face comes out upright
    rolled = astronaut.rotate(25, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    (face,) = detect_faces(rolled)
    aligned = align_face(rolled, face, 256)
    (again,) = detect_faces(aligned.image)
    left, right = eye_centres(again.landmarks)
    assert abs(left[1] - right[1]) / 256 < 0.02


@pytest.mark.usefixtures("landmark_model")
def test_huge_photo_detected_on_a_copy_and_aligned_from_the_original(astronaut, astronaut_face):
    big = astronaut.resize((3072, 3072), Image.Resampling.BICUBIC)
    (face,) = detect_faces(big)  # searched at 2048 px, landmarks from the 3072 px original
    assert np.abs((face.landmarks + 0.5) / 6 - 0.5 - astronaut_face.landmarks).mean() < 1.0
    small = np.asarray(align_face(astronaut, astronaut_face, 128).image, dtype=np.float64)
    large = np.asarray(align_face(big, face, 128).image, dtype=np.float64)  # FFHQ's shrink step runs here
    assert psnr_from_mse(np.mean(((small - large) / 255) ** 2)) > 25
