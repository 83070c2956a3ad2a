"""The training objectives as named terms, each a plain function testable on its own: the GAN's (StyleGAN2's)
and the SR trainer's (relativistic average GAN, least-squares GAN, LR consistency)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..resample import resize


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


def d_relativistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """RaGAN's D loss (Jolicoeur-Martineau 2018, as ESRGAN): real faces should look more real than the average
    SR output, and SR outputs less real than the average real face."""
    return (F.softplus(-(real_logits - fake_logits.mean())).mean()
            + F.softplus(fake_logits - real_logits.mean()).mean()) / 2


def g_relativistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """RaGAN's G loss, D's with the roles swapped: G gets gradient from real faces' logits as well."""
    return (F.softplus(real_logits - fake_logits.mean()).mean()
            + F.softplus(-(fake_logits - real_logits.mean())).mean()) / 2


def d_least_squares_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """LSGAN's D loss (Mao et al. 2017, with targets 1 and 0): ½·(D(x) − 1)² + ½·D(G(z))². Its gradient
    shrinks as D's outputs near their targets instead of growing like the logistic loss's, a milder teacher."""
    return ((real_logits - 1).square().mean() + fake_logits.square().mean()) / 2


def g_least_squares_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """LSGAN's G loss, ½·(D(G(z)) − 1)²; ``real_logits`` is unused, for the same signature as RaGAN's."""
    return (fake_logits - 1).square().mean() / 2


# the SR trainer's adversarial losses by name: (G's, D's), each (real_logits, fake_logits) -> loss
SR_GAN_LOSSES = {"relativistic": (g_relativistic_loss, d_relativistic_loss),
                 "lsgan": (g_least_squares_loss, d_least_squares_loss)}


def lr_consistency_loss(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between the SR output downscaled by pulse's operator and the LR input: what
    the search guarantees and a feed-forward network does not."""
    return F.l1_loss(resize(sr, lr.shape[-2:]), lr)
