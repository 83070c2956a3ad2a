"""The exponential moving average of a network's weights (StyleGAN's G_ema, ESRGAN's and Real-ESRGAN's EMA of G):
the average of the recent weights is smoother than any single step's, which is what a GAN's G oscillates around."""

from __future__ import annotations

import torch
from torch import nn


def ema_keep(batch: int, half_life_images: float) -> float:
    """The share of the average kept per step of ``batch`` images, for a half-life counted in images."""
    return 0.5 ** (batch / half_life_images) if half_life_images > 0 else 0.0


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, keep: float):
    """average ← keep · average + (1 − keep) · model, parameter by parameter; buffers are copied."""
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1 - keep)
    for avg, b in zip(average.buffers(), model.buffers()):
        avg.copy_(b)
