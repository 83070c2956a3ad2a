"""Training fixtures: tiny synthetic faces, the run settings, and one short training run (session-wide: its 20
steps are the expensive part) that the loop, export, checkpoint and command-line tests all read."""

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from pulse.training.config import TrainConfig
from pulse.training.loop import Trainer


def _blob(rng, size=32, mode="RGB") -> Image.Image:
    """A coloured disc on a flat background: enough structure for D to tell real from noise."""
    y, x = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
    inside = ((y - cy) ** 2 + (x - cx) ** 2 < rng.uniform(size / 8, size / 3) ** 2)[..., None]
    pixels = np.where(inside, rng.integers(0, 256, 3), rng.integers(0, 256, 3)).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _jpeg_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def blob():
    """blob(rng, size=32, mode="RGB"): a coloured disc on a flat background, as a PIL image."""
    return _blob


@pytest.fixture(scope="session")
def jpeg_bytes():
    """jpeg_bytes(img): the image as JPEG file bytes."""
    return _jpeg_bytes


@pytest.fixture(scope="session")
def read_log():
    """read_log(run): the run folder's log.jsonl, one dict per line."""
    return _read_log


@pytest.fixture(scope="session")
def train_arch(tiny_arch):
    """The generator the trainer tests build: smaller than tiny_arch, because steps are the cost."""
    return dict(tiny_arch, style_dim=32, channels=[32, 16, 16, 8])


@pytest.fixture(scope="session")
def steps_kimg():
    return 0.08  # 20 steps of 4 images


@pytest.fixture(scope="session")
def train_options(train_arch, steps_kimg):
    """TrainConfig fields of the short runs; copy with dict(train_options, ...) to change one."""
    return dict(train_arch, batch=4, kimg=steps_kimg, checkpoint_every=0.04, snapshot_every=0.032, log_every=0.004,
                fit_samples=2000, device="cpu", seed=3)


@pytest.fixture(scope="session")
def faces(tmp_path_factory):
    """24 PNGs in nested folders and a stored zip shard of 8 JPEGs named like the real shards."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(24):
        folder = root / f"part{i % 2}"
        folder.mkdir(exist_ok=True)
        _blob(rng).save(folder / f"face{i:02d}.png")
    with zipfile.ZipFile(root / "train-00.zip", "w", zipfile.ZIP_STORED) as shard:
        for i in range(8):
            shard.writestr(f"celeba_{i:06d}.jpg", _jpeg_bytes(_blob(rng)))
    return root


@pytest.fixture(scope="session")
def full_run(faces, train_options, steps_kimg, tmp_path_factory):
    """20 uninterrupted steps (the run folder); the checkpoint after 10 of them is kept as halfway.ckpt beside it.

    One trainer runs to 0.04 kimg, then on to 0.08: its state never leaves memory, so this is the uninterrupted
    run, and the copy of its step-10 checkpoint is what a resume starts from.
    """
    runs = tmp_path_factory.mktemp("runs")
    trainer = Trainer(TrainConfig(**dict(train_options, data=[str(faces)], out=str(runs / "full"),
                                       kimg=steps_kimg / 2)))
    trainer.run()
    shutil.copy(runs / "full" / "latest.ckpt", runs / "halfway.ckpt")
    trainer.config.kimg = steps_kimg
    trainer.run()
    return runs / "full"
