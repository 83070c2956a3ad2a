"""How good a generator is on its own, before any search: its random samples against real faces.

All distribution metrics live in one feature space that no discriminator trains on: the ST-LPIPS AlexNet
trunk (``pulse.evaluation.stlpips``), each layer's activations unit-normalised per pixel across channels (as LPIPS
compares them) and averaged over the image, the five layers concatenated, times ``FEATURE_SCALE`` so that
x·x / d is about 1 on real faces, as KID's polynomial kernel expects of Inception features. Numbers are comparable between
generators only when they use the same real faces, sample count and seed.

- ``fd``: Fréchet distance between Gaussians fitted to the two feature sets (FID's formula, other features).
- ``kid``: kernel inception distance's unbiased MMD² with the cubic polynomial kernel, mean over subsets.
- ``precision`` / ``recall`` (Kynkäänniemi et al. 2019): share of samples inside the real faces' k-NN
  balls (fidelity), and of real faces inside the samples' balls (coverage).
- ``diversity``: mean pairwise feature distance of the samples over that of the real faces (1 = as varied).
- ``detected``: share of samples in which dlib's frontal detector finds a face.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .metrics import detect_face, lpips_network

FEATURE_SCALE = 20.0
PR_NEIGHBOURS = 3
KID_SUBSETS, KID_SUBSET_SIZE = 20, 500


@torch.no_grad()
def image_features(images: torch.Tensor, device="cpu", batch: int = 50) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 1152) float64 features (see the module docstring)."""
    net = lpips_network(str(device))
    out = []
    for start in range(0, images.size(0), batch):
        x = net.scale(images[start:start + batch].to(device).float())
        layers = net.net(x)
        out.append(torch.cat([(f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)).mean((2, 3)) for f in layers], 1))
    return torch.cat(out).double().cpu() * FEATURE_SCALE


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(m)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance_gaussians(mu1, cov1, mu2, cov2) -> float:
    """|mu1 − mu2|² + Tr(cov1 + cov2 − 2 (cov1 cov2)^½); the trace of the root is taken through the
    symmetric A cov2 A with A = cov1^½, which has the same eigenvalues as cov1 cov2."""
    root1 = _sqrtm_psd(cov1)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * cross)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance_gaussians(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def kernel_distance(a: torch.Tensor, b: torch.Tensor, subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> float:
    """Unbiased MMD² with k(x, y) = (x·y / d + 1)³, averaged over random subsets (KID's estimator)."""
    n = min(subset_size, a.size(0), b.size(0))
    d = a.size(1)
    rng = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(subsets):
        x = a[torch.randperm(a.size(0), generator=rng)[:n]]
        y = b[torch.randperm(b.size(0), generator=rng)[:n]]
        kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        off = lambda k: (k.sum() - k.diagonal().sum()) / (n * (n - 1))  # noqa: E731
        total += float(off(kxx) + off(kyy) - 2 * kxy.mean())
    return total / subsets


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    distances = torch.cdist(x, x)
    return distances.kthvalue(k + 1, dim=1).values  # the point itself is its own nearest neighbour


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall: manifolds as unions of k-NN balls around each set's points."""
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)
    cross = torch.cdist(fake, real)  # (fake, real)
    precision = (cross <= real_radii[None, :]).any(1).double().mean()
    recall = (cross.T <= fake_radii[None, :]).any(1).double().mean()
    return float(precision), float(recall)


def mean_pairwise_distance(x: torch.Tensor) -> float:
    n = x.size(0)
    return float(torch.pdist(x).sum() * 2 / (n * (n - 1)))


@dataclass
class GeneratorScores:
    fd: float
    kid: float
    precision: float
    recall: float
    diversity: float
    detected: float | None  # None when not measured
    samples: int
    reals: int

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in vars(self).items()}


def score_samples(fake_images: torch.Tensor, real_features: torch.Tensor, device="cpu",
                  detect: bool = True) -> GeneratorScores:
    """Every metric of the module for generated images (N, 3, H, W) in [0, 1] against real features."""
    fake = image_features(fake_images, device)
    precision, recall = precision_recall(real_features, fake)
    detected = sum(detect_face(img) for img in fake_images) / len(fake_images) if detect else None
    return GeneratorScores(
        fd=frechet_distance(real_features, fake), kid=kernel_distance(real_features, fake),
        precision=precision, recall=recall,
        diversity=mean_pairwise_distance(fake) / mean_pairwise_distance(real_features),
        detected=detected, samples=fake.size(0), reals=real_features.size(0))
