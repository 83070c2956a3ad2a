import math

import pytest
import torch

from pulse.evaluation.generator_metrics import (
    frechet_distance,
    frechet_distance_gaussians,
    kernel_distance,
    mean_pairwise_distance,
    precision_recall,
)


def test_frechet_distance_of_diagonal_gaussians_by_hand():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    var1, var2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    # |mu1 - mu2|^2 = 1 + 0 + 4; trace term per dim (sqrt(v1) - sqrt(v2))^2 = 1 + 1 + 4
    expected = 5.0 + 6.0
    got = frechet_distance_gaussians(mu1.double(), torch.diag(var1).double(), mu2.double(), torch.diag(var2).double())
    assert got == pytest.approx(expected, abs=1e-9)


def test_frechet_distance_of_full_covariances_matches_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    torch.manual_seed(0)
    a, b = torch.randn(6, 6, dtype=torch.float64), torch.randn(6, 6, dtype=torch.float64)
    cov1, cov2 = a @ a.T + 0.1 * torch.eye(6), b @ b.T + 0.1 * torch.eye(6)
    mu1, mu2 = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    root = scipy_linalg.sqrtm(cov1.numpy() @ cov2.numpy()).real
    expected = float((mu1 - mu2).square().sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * root.trace())
    assert frechet_distance_gaussians(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-7)


def test_sample_metrics_tell_same_from_different_distributions():
    torch.manual_seed(1)
    real = torch.randn(1500, 8, dtype=torch.float64)
    same = torch.randn(1500, 8, dtype=torch.float64)
    shifted = same + torch.tensor([1.0] + [0.0] * 7, dtype=torch.float64)
    narrow = same * 0.3
    assert frechet_distance(real, same) < 0.1  # finite-sample bias only
    assert frechet_distance(real, shifted) == pytest.approx(1.0, abs=0.3)  # |shift|^2, give or take the sample means
    assert abs(kernel_distance(real, same)) < 0.01 < kernel_distance(real, shifted)
    p_same, r_same = precision_recall(real, same)
    assert p_same > 0.8 and r_same > 0.8
    p_narrow, r_narrow = precision_recall(real, narrow)  # a collapsed generator: faithful but not varied
    assert p_narrow > 0.95 and r_narrow < 0.5
    ratio = mean_pairwise_distance(narrow) / mean_pairwise_distance(real)
    assert ratio == pytest.approx(0.3, rel=0.05)
    far = real + 100
    assert precision_recall(real, far) == (0.0, 0.0)
    assert math.isfinite(kernel_distance(real, far))
