"""From a training run to a generator file: G_ema, a fresh Gaussian fit, and where it came from."""

from __future__ import annotations

from pathlib import Path

import torch

from ..devices import select_device
from ..models import build_generator, generator_config
from ..models.generator_file import write_generator_file
from .checkpoint import load_checkpoint

LICENCE = "non-commercial research (inherits CelebA/CelebA-HQ/All-Age-Faces terms)"


def generator_metadata(run_info: dict, nimg: int) -> dict:
    """What a generator file says about where it came from (shown by the model card and `pulse weights`)."""
    return {
        "name": run_info["name"],
        "data": run_info["data"],
        "kimg": round(nimg / 1000, 3),
        "alignment": "ffhq",
        "licence": LICENCE,
        "training_commands": run_info["commands"],  # every leg of the run, oldest first
        "fine_tuned_from": run_info["init"],
        "trainer": "pulse train: non-saturating loss, lazy R1, G EMA, DiffAugment (options: training_commands)",
    }


def checkpoint_generator(checkpoint: dict, origin: str = "checkpoint") -> torch.nn.Module:
    """A loaded checkpoint's G_ema as a frozen generator in eval mode (on the CPU)."""
    generator = build_generator(generator_config(checkpoint["generator_config"], origin=origin))
    generator.load_state_dict(checkpoint["G_ema"])
    return generator.eval().requires_grad_(False)


def export_checkpoint(checkpoint_path, out, half: bool = False, fit_samples: int = 1_000_000,
                      device: str = "auto", search_defaults: dict | None = None) -> Path:
    """The generator file for a checkpoint's G_ema (``pulse train export``), with the search settings
    recommended for it (see ``search.options_for``)."""
    checkpoint = load_checkpoint(checkpoint_path)
    generator = checkpoint_generator(checkpoint, str(checkpoint_path)).to(select_device(device))
    metadata = generator_metadata(checkpoint["run"], checkpoint["progress"]["nimg"])
    if search_defaults:
        metadata["search_defaults"] = dict(search_defaults)
    return write_generator_file(generator, out, metadata, half=half, fit_samples=fit_samples)
