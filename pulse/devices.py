"""Which device runs the work: CUDA when present, else the CPU; never a silent fallback from an explicit ask."""

from __future__ import annotations

import torch

from .errors import PulseError


def select_device(device: str | torch.device = "auto", index: int | None = None) -> torch.device:
    """'auto' picks CUDA when present, else CPU; asking for CUDA without one is an error, not a silent CPU.
    ``index`` picks the GPU (a training process's local rank)."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PulseError("--device cuda asked for, but CUDA is not available here (use --device auto or cpu)")
    if device.type == "cuda" and index is not None:
        device = torch.device("cuda", index)
    return device
