"""Shared fixtures: tiny random generators that make every test run in seconds on CPU."""

import pytest
import torch

from pulse.models.stylegan1 import Generator, GeneratorConfig
from pulse.models.generator_file import gaussian_fit, save_generator

# Test images are tiny: thread hand-offs cost more than they save (many times more on shared cores).
torch.set_num_threads(1)

TINY = dict(resolution=32, style_dim=64, mapping_layers=2, channels=[64, 32, 16, 8])


def make_tiny_generator(seed: int = 0) -> Generator:
    """A random 32-px generator whose outputs sit in [0, 1] after (x + 1) / 2, like a trained one's."""
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(**TINY)).eval().requires_grad_(False)
    g.synthesis.torgb.weight.mul_(0.15)
    return g


@pytest.fixture(scope="session")
def tiny_generator_file(tmp_path_factory):
    """Path of a generator file holding a tiny random generator and its Gaussian fit."""
    g = make_tiny_generator()
    path = tmp_path_factory.mktemp("gen") / "tiny.pt"
    fit = gaussian_fit(g.mapping, g.style_dim, samples=20_000)
    save_generator(path, g, fit, {"name": "tiny-test", "resolution": 32, "alignment": "ffhq", "licence": "test"})
    return path
