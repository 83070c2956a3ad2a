import math

import pytest
import torch

from pulse.training.losses import d_logistic_loss, d_r1_loss, g_nonsaturating_loss


def test_logistic_losses_by_hand():
    assert g_nonsaturating_loss(torch.zeros(4)).item() == pytest.approx(math.log(2))
    assert d_logistic_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * math.log(2))
    # a confident, right D: its loss tends to 0 and G's grows linearly with the logit
    assert d_logistic_loss(torch.full((2,), 20.0), torch.full((2,), -20.0)).item() < 1e-8
    assert abs(g_nonsaturating_loss(torch.full((2,), -20.0)).item() - 20.0) < 1e-6


def test_r1_is_the_squared_gradient_norm_of_d_at_real_images():
    w = torch.randn(3, 4, 4)
    reals = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (reals * w).sum((1, 2, 3)) + (reals**2).sum((1, 2, 3))  # gradient: w + 2 x
    expected = (w + 2 * reals.detach()).square().sum((1, 2, 3)).mean()
    r1 = d_r1_loss(logits, reals)
    assert torch.allclose(r1, expected)
    r1.backward()  # the graph was kept: the penalty trains D
    assert reals.grad is not None
