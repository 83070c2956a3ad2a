"""The GAN objective as named terms (StyleGAN2's): each a plain function of logits, testable on its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G wants D to call its images real: −log sigmoid(D(G(z))), which keeps its gradient when D wins."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's logistic loss: −log sigmoid(D(x)) − log(1 − sigmoid(D(G(z))))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def d_r1_loss(real_logits: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): the squared norm of D's gradient at real images, per image, averaged.
    ``reals`` must require grad and ``real_logits`` come from them; the graph is kept for the backward."""
    grad, = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    return grad.square().sum(dim=tuple(range(1, grad.dim()))).mean()
