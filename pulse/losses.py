"""PULSE's losses, per image: downscaling consistency (L2, L1, CHARB) and the geodesic latent prior (GEOCROSS).

Every function returns one value per image (shape (B,)), so a batch of many faces is many independent
problems: each image's eps clamp stops only its own gradient, and success is judged per image.
"""

from __future__ import annotations

import re

import torch

LOSS_TERMS = ("L2", "L1", "CHARB", "GEOCROSS")
CONSISTENCY_TERMS = ("L2", "L1", "CHARB")
DEFAULT_LOSS = "100*L2+0.05*GEOCROSS"
CHARBONNIER_DELTA = 0.01  # about 2.5 levels of 8 bits: quadratic inside the noise of a compressed LR, linear outside


def l2(lr_pred: torch.Tensor, lr_target: torch.Tensor, eps: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Mean squared error over C, H, W, clamped below at eps (no gradient once an image is good enough)."""
    return (lr_pred - lr_target).pow(2).mean((1, 2, 3)).clamp(min=eps)


def l1(lr_pred: torch.Tensor, lr_target: torch.Tensor, eps: torch.Tensor | float = 0.0) -> torch.Tensor:
    """10 x mean absolute error, clamped below at eps (PULSE's scaling)."""
    return (10 * (lr_pred - lr_target).abs().mean((1, 2, 3))).clamp(min=eps)


def charbonnier(lr_pred: torch.Tensor, lr_target: torch.Tensor, eps: torch.Tensor | float = 0.0,
                delta: float = CHARBONNIER_DELTA) -> torch.Tensor:
    """10 x mean of sqrt(d^2 + delta^2) - delta, clamped below at eps: L1 scaled like PULSE's, but smooth at 0.

    A robust term for LR inputs with compression noise (JPEG blocks, ringing): a pixel that no face can explain
    pulls with a bounded force instead of one growing with its error, so it does not bend the whole face."""
    d2 = (lr_pred - lr_target).pow(2)
    return (10 * ((d2 + delta**2).sqrt() - delta).mean((1, 2, 3))).clamp(min=eps)


def geocross(ws: torch.Tensor) -> torch.Tensor:
    """Mean squared geodesic angle between every pair of a face's W+ vectors, times 64.

    d(i, j) = 2 atan2(|wi - wj|, |wi + wj|). Keeps the per-layer latents close together, i.e. near the
    region where the generator was trained (one w for all layers). ws: (B, n_styles, dim); 0 when n_styles = 1.
    """
    if ws.shape[1] == 1:
        return ws.new_zeros(ws.shape[0])
    a = ws.unsqueeze(1)
    b = ws.unsqueeze(2)
    dist = ((a - b).pow(2).sum(-1) + 1e-9).sqrt()
    anti = ((a + b).pow(2).sum(-1) + 1e-9).sqrt()
    angle = 2 * torch.atan2(dist, anti)
    return 64 * angle.pow(2).mean((1, 2))


def parse_loss(spec: str) -> list[tuple[float, str]]:
    """'100*L2+0.05*GEOCROSS' -> [(100.0, 'L2'), (0.05, 'GEOCROSS')]. Raises ValueError on bad specs."""
    terms = []
    for part in spec.replace(" ", "").split("+"):
        match = re.fullmatch(r"(?:([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\*)?([A-Za-z0-9]+)", part)
        if not match or match.group(2).upper() not in LOSS_TERMS:
            raise ValueError(f"bad loss term {part!r} in {spec!r}: use weight*NAME joined by '+', NAME in {LOSS_TERMS}")
        terms.append((float(match.group(1) or 1.0), match.group(2).upper()))
    if not any(name in CONSISTENCY_TERMS for _, name in terms):
        raise ValueError(f"loss {spec!r} needs a downscaling term ({', '.join(CONSISTENCY_TERMS)})")
    return terms


def total_loss(terms, lr_pred, lr_target, ws, eps) -> dict[str, torch.Tensor]:
    """Each term and their weighted sum ('total'), per image."""
    parts = {
        "L2": lambda: l2(lr_pred, lr_target, eps),
        "L1": lambda: l1(lr_pred, lr_target, eps),
        "CHARB": lambda: charbonnier(lr_pred, lr_target, eps),
        "GEOCROSS": lambda: geocross(ws),
    }
    values = {name: parts[name]() for _, name in terms}
    values["total"] = sum(weight * values[name] for weight, name in terms)
    return values
