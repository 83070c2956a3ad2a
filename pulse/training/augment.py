"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for a discriminator trained on few faces.

The discriminator only ever sees augmented images, real and generated alike, with the same random policy;
because every operation is differentiable, the generator's gradient passes through the augmentation and it
learns to produce un-augmented faces. This stops the discriminator from memorising a small training set.
Each operation applies to every image (p = 1), or, adaptively (ADA, Karras et al. 2020), to each image with a
probability p that ``ada_step`` raises while D looks overfitted and lowers while it does not. Mirroring is
not here: the data order mirrors real faces already (``dataset.DataOrder``).
All randomness comes from torch's global generator on the images' device (saved with checkpoints).
"""

from __future__ import annotations

import torch

POLICIES = ("color", "translation", "cutout")
ADA_INTERVAL = 4  # D steps between adjustments of p
ADA_KIMG = 100  # p can go from 0 to 1 in this many kimg (ADA: 500; our runs are short)


def parse_policy(spec: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> a tuple of known operations ('' or 'none' -> no augmentation)."""
    names = tuple(name.strip() for name in spec.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)} (choose from {', '.join(POLICIES)})")
    return names


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (±0.5), saturation (0-2x) and contrast (0.5-1.5x), per image; x in about [-1, 1]."""
    n = x.size(0)
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y, filling with zeros."""
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy  # source row of each output pixel
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    # index into a zero border: out-of-range sources land on it
    rows, cols = (rows + 1).clamp(0, h + 1), (cols + 1).clamp(0, w + 1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random rectangle of ``ratio`` × the image size in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPERATIONS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...] = POLICIES, p: float = 1.0) -> torch.Tensor:
    """Apply the policy's operations in order, each to an image with probability ``p``; differentiable with
    respect to ``x``."""
    for name in policy:
        if p >= 1:
            x = OPERATIONS[name](x)
        elif p > 0:
            chosen = torch.rand(x.size(0), 1, 1, 1, device=x.device) < p
            x = torch.where(chosen, OPERATIONS[name](x), x)
    return x


def ada_step(p: float, real_sign: float, target: float, images: int) -> float:
    """ADA's controller: ``real_sign`` = E[sign D(real)] over the last images (1: D is sure of every real face,
    a sign of overfitting); above ``target`` p rises, below it falls, by at most ``images`` / ``ADA_KIMG`` kimg."""
    step = images / (ADA_KIMG * 1000)
    return min(max(p + (step if real_sign > target else -step), 0.0), 1.0)
