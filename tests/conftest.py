"""Shared fixtures: tiny random generators that make every test run in seconds on CPU, the astronaut photo, and
the rule that packages of the test extra are required: a test that needs one fails saying what to install, it
never skips.

The test folders mirror pulse/ (tests/models/ tests pulse/models/, ...) and each is a package (an __init__.py):
pytest imports tests/training/test_losses.py as tests.training.test_losses, so basenames may repeat across
folders. Fixtures used by one folder only live in that folder's conftest.py; helpers are fixtures too (nothing
imports from a conftest).
"""

import importlib
import importlib.util
import sys
from pathlib import Path
from types import MappingProxyType

import pytest
import torch
from PIL import Image

from pulse.models.generator_file import gaussian_fit, save_generator
from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator

# Test images are tiny: thread hand-offs cost more than they save (many times more on shared cores).
torch.set_num_threads(1)

INSTALL_TEST_EXTRA = 'pip install -e ".[test]"'


def _fail_missing_test_extra(package: str, what: str):
    pytest.fail(f"{package} is not installed: {what}. It is part of pulse's test extra, so the tests that need it "
                f"fail instead of skipping: {INSTALL_TEST_EXTRA}", pytrace=False)


def _import_test_extra(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        _fail_missing_test_extra(package, f"cannot import {module} ({err})")


@pytest.fixture(scope="session")
def fail_missing_test_extra():
    """fail_missing_test_extra(package, what): fail the test (never skip) naming the test-extra package to install."""
    return _fail_missing_test_extra


@pytest.fixture(scope="session")
def import_test_extra():
    """import_test_extra(module, package): the module, or the test fails naming the test-extra package to install."""
    return _import_test_extra


@pytest.fixture(scope="session")
def dlib_recognition_model():
    """Path of dlib's face-recognition ResNet from face-recognition-models (a test extra: missing, the test fails)."""
    from pulse.faces.dlib_resnet import RECOGNITION_MODEL
    from pulse.files import installed_package_file

    path = installed_package_file("face_recognition_models", f"models/{RECOGNITION_MODEL}")
    if path is None:
        _fail_missing_test_extra("face-recognition-models", f"{RECOGNITION_MODEL} not found")
    return path


@pytest.fixture(scope="session")
def tiny_arch():
    """The tiny StyleGAN-1 layout (StyleGAN1Config fields), read-only: copy it with dict(tiny_arch, ...)."""
    return MappingProxyType(dict(resolution=32, style_dim=64, mapping_layers=2, channels=[64, 32, 16, 8]))


@pytest.fixture(scope="session")
def tiny_generator(tiny_arch):
    """tiny_generator(seed=0): a random 32-px generator whose outputs sit in [0, 1] after (x + 1) / 2, like a
    trained one's."""
    def make(seed: int = 0) -> StyleGAN1Generator:
        torch.manual_seed(seed)
        g = StyleGAN1Generator(StyleGAN1Config(**tiny_arch)).eval().requires_grad_(False)
        g.synthesis.torgb.weight.mul_(0.15)
        return g
    return make


@pytest.fixture(scope="session")
def tiny_generator_file(tiny_generator, tmp_path_factory):
    """Path of a generator file holding a tiny random generator and its Gaussian fit."""
    g = tiny_generator()
    path = tmp_path_factory.mktemp("gen") / "tiny.pt"
    fit = gaussian_fit(g.mapping, g.style_dim, samples=20_000)
    save_generator(path, g, fit, {"name": "tiny-test", "resolution": 32, "alignment": "ffhq", "licence": "test"})
    return path


@pytest.fixture(scope="session")
def astronaut(import_test_extra):
    """scikit-image's astronaut photo (public domain, 512 x 512 RGB): a real face for detection and metrics."""
    data = import_test_extra("skimage.data", "scikit-image")
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def demo_load():
    """benchmarks/demo_load.py as a module: the demo tests start servers and send storms of visitors with it."""
    spec = importlib.util.spec_from_file_location("demo_load", Path(__file__).resolve().parents[1] / "benchmarks" /
                                                  "demo_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_load"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["demo_load"]


TINY_ENCODER = dict(scale=4, kimg=4.0, batch=64, channels=[32, 64], hidden=128, lr=1e-3, checkpoint_every=2.0,
                    log_every=1.0, device="cpu")


@pytest.fixture(scope="session")
def tiny_encoder_options():
    """The settings of the tiny encoder run (scale 4: 8 px LR for the 32 px generator), read-only."""
    return MappingProxyType(TINY_ENCODER)


@pytest.fixture(scope="session")
def tiny_encoder_file(tiny_generator_file, tmp_path_factory):
    """An encoder trained for a few seconds on the tiny generator's own faces (x4), recommending 30 steps."""
    from pulse.training.encoder_loop import train_encoder

    out = tmp_path_factory.mktemp("encoder") / "run"
    return train_encoder(dict(TINY_ENCODER, generator=str(tiny_generator_file), out=str(out),
                              search_defaults={"steps": 30}))
