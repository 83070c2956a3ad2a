"""dlib's face ResNet read by pulse: the same descriptors as dlib on face chips, and one-line errors on bad files.

The chips come from files of a clean clone: the generator's sample grid (16 faces) and the astronaut, cut by
dlib.get_face_chip from her 68 landmarks, plus a mirrored, a shifted and a turned copy of her chip.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pulse.errors import PulseError
from pulse.faces.dlib_resnet import CHIP_SIZE, load_dlib_face_resnet

SAMPLES = Path(__file__).resolve().parents[2] / "weights" / "samples.png"


SAMPLE_TILE, SAMPLE_BORDER = 128, 2  # weights/samples.png: a 4 x 4 grid of 128 px faces with 2 px borders


@pytest.fixture(scope="module")
def resnet(dlib_recognition_model):
    return load_dlib_face_resnet(dlib_recognition_model)


def _sample_chips() -> list[np.ndarray]:
    grid = Image.open(SAMPLES).convert("RGB")
    step = SAMPLE_TILE + SAMPLE_BORDER
    chips = []
    for top in range(SAMPLE_BORDER, grid.height - SAMPLE_TILE + 1, step):
        for left in range(SAMPLE_BORDER, grid.width - SAMPLE_TILE + 1, step):
            tile = grid.crop((left, top, left + SAMPLE_TILE, top + SAMPLE_TILE))
            chips.append(np.asarray(tile.resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.BICUBIC)))
    return chips


def _astronaut_chips(astronaut, astronaut_face) -> list[np.ndarray]:
    import dlib

    left, top, right, bottom = (round(v) for v in astronaut_face.box)
    points = [dlib.point(round(x), round(y)) for x, y in astronaut_face.landmarks]
    shape = dlib.full_object_detection(dlib.rectangle(left, top, right - 1, bottom - 1), points)
    chip = dlib.get_face_chip(np.asarray(astronaut), shape, size=CHIP_SIZE, padding=0.25)
    image = Image.fromarray(chip)
    shifted = Image.fromarray(np.roll(chip, (6, -4), axis=(0, 1)))
    turned = image.rotate(8, resample=Image.Resampling.BILINEAR, fillcolor=(128, 128, 128))
    return [chip, np.asarray(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), np.asarray(shifted),
            np.asarray(turned)]


def test_descriptors_equal_dlibs_on_face_chips(resnet, dlib_recognition_model, astronaut, astronaut_face):
    import dlib

    chips = np.stack(_sample_chips() + _astronaut_chips(astronaut, astronaut_face))
    assert chips.shape == (20, CHIP_SIZE, CHIP_SIZE, 3) and chips.dtype == np.uint8
    dlib_net = dlib.face_recognition_model_v1(str(dlib_recognition_model))
    expected = np.stack([np.asarray(dlib_net.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips])
    with torch.no_grad():
        got = resnet(torch.from_numpy(chips).permute(0, 3, 1, 2).float()).double().numpy()
    assert got.shape == (20, 128)
    assert np.abs(got - expected).max() < 1e-3
    # the chips are not all one face to dlib: the comparison is not between near-constant vectors
    assert np.linalg.norm(expected[0] - expected[16]) > 0.3


def test_features_are_the_trunk_of_the_descriptor(resnet):
    chips = torch.randint(0, 256, (2, 3, CHIP_SIZE, CHIP_SIZE), dtype=torch.uint8)
    with torch.no_grad():
        maps = resnet.features(chips)
        assert [tuple(m.shape[1:]) for m in maps] == [(32, 35, 35), (64, 17, 17), (128, 8, 8), (256, 4, 4),
                                                       (256, 2, 2)]
        assert torch.allclose(resnet.embed(maps[-1]), resnet(chips.float()))


@pytest.mark.parametrize("keep", [0, 100, 0.5, -1], ids=["empty", "header", "half", "last-byte-missing"])
def test_truncated_file_is_one_line_naming_it(keep, dlib_recognition_model, tmp_path):
    data = dlib_recognition_model.read_bytes()
    keep = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / "cut.dat"
    path.write_bytes(data[:keep])
    with pytest.raises(PulseError) as err:
        load_dlib_face_resnet(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_other_files_are_refused(tmp_path, dlib_recognition_model):
    with pytest.raises(PulseError, match="not found"):
        load_dlib_face_resnet(tmp_path / "missing.dat")
    predictor = dlib_recognition_model.with_name("shape_predictor_5_face_landmarks.dat")  # a dlib file, not a network
    with pytest.raises(PulseError, match="not a readable dlib face-recognition network") as err:
        load_dlib_face_resnet(predictor)
    assert str(predictor) in str(err.value) and "\n" not in str(err.value)
