"""Antialiased resizing as separable resampling matrices: bicubic (PULSE's), box (area average) and bilinear.

PULSE's guarantee ("the result downscales back to the input") is only as good as the downscaling operator,
so one operator makes LR inputs, computes the loss and checks results. The default matches Pillow's
``Image.resize(..., BICUBIC)``: cubic kernel with a = -0.5, stretched by the factor when shrinking
(antialiasing), rows normalised over the pixels that fall inside the image. An LR made another way (a mosaic
averages blocks; many thumbnails are bilinear) is explained best by its own operator, so the others are here
in the same form: "box" weighs each input pixel by its overlap with the output pixel (the exact area average,
for non-integer factors too), "bilinear" is the triangle kernel antialiased like the cubic one (Pillow's
BILINEAR). As a matrix product each is differentiable, batched, works on any device and for any pair of sizes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

CUBIC_A = -0.5
CUBIC_SUPPORT = 2.0
KERNELS = ("bicubic", "box", "bilinear")
DEFAULT_KERNEL = "bicubic"


def cubic(x: np.ndarray, a: float = CUBIC_A) -> np.ndarray:
    """Keys' cubic convolution kernel."""
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def triangle(x: np.ndarray) -> np.ndarray:
    """The linear interpolation kernel."""
    return np.clip(1.0 - np.abs(x), 0.0, None)


def _area_weights(in_size: int, out_size: int) -> np.ndarray:
    """Output pixel j covers input [j, j + 1) x in/out; each input pixel weighs by how much of it lies inside."""
    edges = np.arange(out_size + 1) * (in_size / out_size)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixels = np.arange(in_size)[None, :]
    return np.clip(np.minimum(ends, pixels + 1.0) - np.maximum(starts, pixels), 0.0, None)


@lru_cache(maxsize=256)
def _matrix64(in_size: int, out_size: int, kernel: str = DEFAULT_KERNEL) -> np.ndarray:
    if kernel == "box":
        weights = _area_weights(in_size, out_size)
    else:
        scale = in_size / out_size
        stretch = max(scale, 1.0)  # widen the kernel when shrinking: antialiasing
        centers = (np.arange(out_size) + 0.5) * scale
        taps = np.arange(in_size) + 0.5
        weights = (cubic if kernel == "bicubic" else triangle)((taps[None, :] - centers[:, None]) / stretch)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    return kernel


@lru_cache(maxsize=256)
def resample_matrix(in_size: int, out_size: int, device=None, dtype=torch.float32,
                    kernel: str = DEFAULT_KERNEL) -> torch.Tensor:
    """The (out_size, in_size) matrix that resizes one axis. Kept per device (shared: never modify it), so the
    search's every step does not copy it to the GPU again: such a copy makes the host wait for the GPU."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    check_kernel(kernel)
    with torch.inference_mode(False):  # made under inference mode, it could never take part in a backward pass
        return torch.as_tensor(_matrix64(int(in_size), int(out_size), kernel), dtype=dtype, device=device)


def resize(images: torch.Tensor, size: int | tuple[int, int], kernel: str = DEFAULT_KERNEL) -> torch.Tensor:
    """Resize a (..., H, W) tensor to ``size`` (an int for square, or (height, width)) with ``kernel``, one of
    ``KERNELS``."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    in_h, in_w = images.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return images
    rows = resample_matrix(in_h, out_h, images.device, images.dtype, kernel)
    cols = resample_matrix(in_w, out_w, images.device, images.dtype, kernel)
    return rows @ images @ cols.T
