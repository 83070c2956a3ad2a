"""Antialiased bicubic resizing as separable resampling matrices.

PULSE's guarantee ("the result downscales back to the input") is only as good as the downscaling operator,
so one operator makes LR inputs, computes the loss and checks results. It matches Pillow's
``Image.resize(..., BICUBIC)``: cubic kernel with a = -0.5, stretched by the factor when shrinking
(antialiasing), rows normalised over the pixels that fall inside the image. As a matrix product it is
differentiable, batched, works on any device and for any pair of sizes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

CUBIC_A = -0.5
CUBIC_SUPPORT = 2.0


def cubic(x: np.ndarray, a: float = CUBIC_A) -> np.ndarray:
    """Keys' cubic convolution kernel."""
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=256)
def _matrix64(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    stretch = max(scale, 1.0)  # widen the kernel when shrinking: antialiasing
    centers = (np.arange(out_size) + 0.5) * scale
    taps = np.arange(in_size) + 0.5
    weights = cubic((taps[None, :] - centers[:, None]) / stretch)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


@lru_cache(maxsize=256)
def resample_matrix(in_size: int, out_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The (out_size, in_size) matrix that resizes one axis. Kept per device (shared: never modify it), so the
    search's every step does not copy it to the GPU again: such a copy makes the host wait for the GPU."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    with torch.inference_mode(False):  # made under inference mode, it could never take part in a backward pass
        return torch.as_tensor(_matrix64(int(in_size), int(out_size)), dtype=dtype, device=device)


def resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize a (..., H, W) tensor to ``size`` (an int for square, or (height, width))."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    in_h, in_w = images.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return images
    rows = resample_matrix(in_h, out_h, images.device, images.dtype)
    cols = resample_matrix(in_w, out_w, images.device, images.dtype)
    return rows @ images @ cols.T
