import math

import pytest
import torch

from pulse import losses
from pulse.search import lr_factor


def test_geocross_zero_for_identical_vectors():
    w = torch.randn(1, 512).expand(3, 6, 512).clone()
    assert torch.allclose(losses.geocross(w), torch.zeros(3), atol=1e-6)


def test_geocross_hand_computed_pair():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])  # 90 degrees apart
    ws = torch.stack([a, b])[None]
    angle = 2 * math.atan2(math.sqrt(2), math.sqrt(2))  # = pi / 2
    # pairs (a,a), (a,b), (b,a), (b,b): two zero, two of angle^2; mean over 4, times 64
    expected = 64 * (2 * angle**2) / 4
    assert losses.geocross(ws).item() == pytest.approx(expected, rel=1e-5)


def test_l2_clamps_per_image():
    target = torch.zeros(2, 3, 4, 4)
    pred = torch.stack([torch.full((3, 4, 4), 0.01), torch.full((3, 4, 4), 0.5)])
    out = losses.l2(pred, target, eps=torch.tensor([2e-3, 2e-3]))
    assert out[0].item() == pytest.approx(2e-3)  # 1e-4 clamped up to eps
    assert out[1].item() == pytest.approx(0.25)


def test_parse_loss():
    assert losses.parse_loss("100*L2+0.05*GEOCROSS") == [(100.0, "L2"), (0.05, "GEOCROSS")]
    assert losses.parse_loss("L1") == [(1.0, "L1")]
    with pytest.raises(ValueError, match="bad loss term"):
        losses.parse_loss("100*L3")
    with pytest.raises(ValueError, match="downscaling term"):
        losses.parse_loss("GEOCROSS")


def test_linear1cycledrop_schedule():
    # the formula: 0.1 -> 1 at 45 % -> 0.1 at 90 % -> linearly to 0.001 at the end
    assert lr_factor(0, 100) == pytest.approx(0.1)
    assert lr_factor(45, 100) == pytest.approx(1.0)
    assert lr_factor(90, 100) == pytest.approx(0.1)
    assert lr_factor(99, 100) == pytest.approx(0.1 + 0.9 * (0.001 - 0.1))
    assert lr_factor(7, 100, "fixed") == 1.0


def test_charbonnier_is_robust_l1_scaled_like_pulse_and_clamped_per_image():
    target = torch.zeros(2, 3, 4, 4)
    pred = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), 1e-4)])
    out = losses.charbonnier(pred, target, eps=torch.tensor([1e-6, 2e-3]))
    delta = losses.CHARBONNIER_DELTA
    assert out[0].item() == pytest.approx(10 * (math.sqrt(0.25 + delta**2) - delta), rel=1e-5)
    assert out[1].item() == pytest.approx(2e-3)  # the tiny error clamped up to its eps
    # an outlier pulls with a bounded force: its gradient is at most 10 / N whatever its size (L2's grows with it)
    pred = torch.zeros(1, 3, 4, 4, requires_grad=True)
    target = torch.zeros(1, 3, 4, 4)
    target[0, 0, 0, 0] = 1.0
    losses.charbonnier(pred, target).sum().backward()
    assert pred.grad.abs().max().item() <= 10 / 48 + 1e-6
    assert losses.parse_loss("100*L2+CHARB") == [(100.0, "L2"), (1.0, "CHARB")]
    assert losses.parse_loss("2*CHARB+0.05*GEOCROSS") == [(2.0, "CHARB"), (0.05, "GEOCROSS")]
