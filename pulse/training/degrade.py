"""Real-world LR inputs for SR training, in Real-ESRGAN's order (Wang et al. 2021, its first-order pipeline):
blur with a random Gaussian kernel → resize to the LR size by a random method → Gaussian or Poisson noise →
JPEG at a random quality. A network trained only on pulse's clean bicubic downscales meets photos that were
blurred, resized by other software, noisy and compressed; these inputs show it that world.

Every draw comes from a generator seeded by the run's seed and the image count, so a resumed run draws the same
degradations as an uninterrupted one without storing any random state.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..imageio import quantize

DEGRADATIONS = ("bicubic", "realesrgan")
BLUR_SIGMA = (0.05, 0.75)  # × the scale, in HR pixels (Real-ESRGAN's 0.2 … 3 at ×4)
RESIZE_MODES = ("area", "bilinear", "bicubic")
GAUSSIAN_NOISE = (1 / 255, 15 / 255)  # standard deviation (Real-ESRGAN's 1 … 30 of 255, halved for small faces)
PHOTONS = (150, 30_000)  # Poisson noise: photons at full intensity, log-uniform (at mid grey as strong as the above)
JPEG_QUALITY = (40, 95)


def degradation_generator(seed: int, nimg: int) -> torch.Generator:
    """The generator of the batch that starts at image ``nimg``: the same draws whenever that batch is made."""
    return torch.Generator().manual_seed(seed * 1_000_003 + nimg)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float, size: int) -> torch.Tensor:
    """A (size, size) anisotropic Gaussian with the given axis deviations, rotated by ``angle``, summing to 1."""
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = cos * x + sin * y, -sin * x + cos * y
    kernel = torch.exp(-(u / sigma_x) ** 2 / 2 - (v / sigma_y) ** 2 / 2)
    return (kernel / kernel.sum()).float()


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).to(image.device, image.dtype) / 255


def degrade(hr: torch.Tensor, lr_size: int, generator: torch.Generator) -> torch.Tensor:
    """HR faces (B, 3, H, W) in [0, 1] -> degraded LR faces (B, 3, lr_size, lr_size) at 8-bit levels, each face
    with its own draws."""
    scale = hr.shape[-1] / lr_size
    out = []
    for image in hr:
        sigma_x, sigma_y = (_uniform(generator, *BLUR_SIGMA) * scale for _ in range(2))
        size = 2 * math.ceil(3 * max(sigma_x, sigma_y)) + 1
        kernel = gaussian_kernel(sigma_x, sigma_y, _uniform(generator, 0, math.pi), size).to(hr.device)
        padded = F.pad(image[:, None], (size // 2,) * 4, mode="reflect") if size // 2 < image.shape[-1] else None
        blurred = F.conv2d(padded, kernel[None, None])[:, 0] if padded is not None else image
        mode = RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (), generator=generator))]
        low = F.interpolate(blurred[None], size=(lr_size, lr_size), mode=mode,
                            **({} if mode == "area" else {"antialias": True, "align_corners": False}))[0]
        if torch.rand((), generator=generator).item() < 0.5:
            sigma = _uniform(generator, *GAUSSIAN_NOISE)
            noise = torch.randn(low.shape, generator=generator) * sigma
        else:
            photons = math.exp(_uniform(generator, *map(math.log, PHOTONS)))  # shot noise: grows with the intensity
            counts = low.clamp(0, 1).cpu() * photons
            noise = torch.poisson(counts, generator=generator) / photons - low.clamp(0, 1).cpu()
        low = quantize(low + noise.to(low.device))
        out.append(_jpeg(low, int(round(_uniform(generator, *JPEG_QUALITY)))))
    return torch.stack(out)
