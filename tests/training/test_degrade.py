"""Real-ESRGAN-style degraded training inputs: the size and 8-bit levels `pulse run` reads, the same draws for the
same seed and image count (exact resume), and degradations that differ from clean bicubic and from face to face."""

import math

import pytest
import torch

from pulse.resample import resize
from pulse.training.degrade import degradation_generator, degrade, gaussian_kernel
from pulse.training.sr_loop import make_lr


def test_kernel_sums_to_one_and_stretches_along_its_angle():
    kernel = gaussian_kernel(4.0, 1.0, 0.0, 25)
    assert kernel.sum().item() == pytest.approx(1.0)
    assert kernel[12, 8] > 10 * kernel[8, 12]  # wide along x, narrow along y
    turned = gaussian_kernel(4.0, 1.0, math.pi / 2, 25)
    assert torch.allclose(turned, kernel.T, atol=1e-6)


def test_degraded_inputs_are_reproducible_8_bit_lr_faces():
    hr = resize(torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)), 128)  # smooth "faces"
    first = degrade(hr, 16, degradation_generator(3, 480))
    assert first.shape == (6, 3, 16, 16) and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, (first * 255).round() / 255)
    assert torch.equal(first, degrade(hr, 16, degradation_generator(3, 480)))  # what a resumed run draws
    assert not torch.equal(first, degrade(hr, 16, degradation_generator(3, 496)))  # the next batch draws anew
    clean = make_lr(hr, 16)
    error = (first - clean).abs().flatten(1).mean(1)
    assert (error > 1 / 255).all(), error  # every face degraded, not passed through
    assert error.std() > 0  # and each its own way
    assert (error < 0.2).all(), error  # still the same face
