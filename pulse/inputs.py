"""Inputs as every method takes them: a path, a PIL image, a numpy array or a tensor becomes an LR tensor, or one
``PulseError`` line naming the input; and the size rules of a face and of its enlargement."""

from __future__ import annotations

import math
import os
from functools import partial

import numpy as np
import torch
from PIL import Image

from .errors import PulseError
from .imageio import load_image, pil_to_tensor, to_rgb

ImageLike = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike


def to_lr_tensor(img: ImageLike, name: str = "input", resolution: int | None = None) -> torch.Tensor:
    """Any supported input -> (3, h, w) float32 in [0, 1]; raises PulseError naming ``name``.

    ``resolution``: also check the face fits a generator of this size (``check_lr_size``), for a file from its
    header, before decoding it."""
    if isinstance(img, (str, os.PathLike)):
        check = None if resolution is None else partial(check_lr_size, resolution=resolution, name=name)
        lr = pil_to_tensor(load_image(img, check_size=check))
    else:
        lr = _to_tensor(img, name)
    if resolution is not None:
        check_lr_size(lr.shape[-1], lr.shape[-2], resolution, name)
    return lr


def _to_tensor(img, name: str) -> torch.Tensor:
    if isinstance(img, Image.Image):
        return pil_to_tensor(to_rgb(img, name))
    if isinstance(img, np.ndarray):
        if img.dtype == np.uint8:
            arr = img
        elif img.dtype == np.uint16:
            arr = (img.astype(np.float64) / 257 + 0.5).astype(np.uint8)
        else:
            raise PulseError(f"{name}: numpy image must be uint8 or uint16 (H, W[, C]), got {img.dtype}")
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4)):
            mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[1 if arr.ndim == 2 else arr.shape[2]]
            return pil_to_tensor(to_rgb(Image.fromarray(arr.squeeze(-1) if mode == "L" and arr.ndim == 3 else arr, mode), name))
        raise PulseError(f"{name}: numpy image must be (H, W) or (H, W, 1|2|3|4), got shape {arr.shape}")
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise PulseError(f"{name}: tensor must be (3, H, W) or (1, H, W), got shape {tuple(img.shape)}")
        if t.dtype == torch.uint8:
            t = t.float() / 255
        elif t.is_floating_point():
            t = t.float()
            if not torch.isfinite(t).all():
                raise PulseError(f"{name}: tensor contains NaN or infinite values")
            if t.min() < 0 or t.max() > 1:
                raise PulseError(f"{name}: float tensor values must lie in [0, 1], got [{t.min():.3g}, {t.max():.3g}]")
        else:
            raise PulseError(f"{name}: tensor dtype must be float (values in [0, 1]) or uint8, got {t.dtype}")
        return t.expand(3, -1, -1).contiguous()
    raise PulseError(f"{name}: unsupported input type {type(img).__name__} (give a path, PIL image, array or tensor)")


def output_size(lr_size: int, scale: float, name: str = "input") -> int:
    """input size x scale, which must be a positive whole number of pixels."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise PulseError(f"{name}: scale must be > 0 and finite, got {scale!r}")
    size = lr_size * scale
    if abs(size - round(size)) > 1e-6 or round(size) < 1:
        raise PulseError(f"{name}: {lr_size} px x scale {scale} = {size:g} px is not a whole number of pixels")
    return int(round(size))


def check_lr_size(width: int, height: int, resolution: int, name: str = "input") -> None:
    """The search needs a square face no larger than the generator's output."""
    if width != height:
        raise PulseError(f"{name}: {width}x{height} is not square; crop and align faces first with `pulse align`")
    if width > resolution:
        raise PulseError(f"{name}: {width}x{height} is larger than the generator's {resolution} px output; "
                         "nothing to upsample")


def as_rgb_array(img: ImageLike, channel_order: str) -> ImageLike:
    """A numpy image in ``channel_order`` ("rgb", or "bgr"/"bgra" as OpenCV gives them) with its colours in RGB
    order; other inputs as they are (files, PIL images and tensors say or fix their own order)."""
    if channel_order not in ("rgb", "bgr"):
        raise PulseError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if channel_order == "bgr" and isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] in (3, 4):
        return np.ascontiguousarray(img[..., [2, 1, 0, 3][: img.shape[2]]])
    return img


def input_name(img, index: int) -> str:
    """How messages name an input: its path, else its place in the call."""
    return str(img) if isinstance(img, (str, os.PathLike)) else f"image {index}"
