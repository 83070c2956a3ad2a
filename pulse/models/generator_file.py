"""The generator file: a network of any ``pulse.models`` architecture, ready for the search.

A plain dict of tensors, strings and numbers, readable with ``torch.load(weights_only=True)``: config (with
the architecture's name), weights, the Gaussian fit of the mapping output that the search needs, and metadata
(resolution, alignment convention, data, licence, recommended search settings).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PulseError
from ..files import file_state, load_payload, save_payload
from ..progress import progress_bar
from . import build_generator, generator_config

FILE_FORMAT = "pulse-generator"


FILE_VERSION = 2  # 2: config["architecture"] (files without it are StyleGAN-1)
FIT_SAMPLES = 1_000_000  # latents in the Gaussian fit: the reference's choice
MAPPING_SLOPE = 0.2  # the mapping's output LeakyReLU: the Gaussian fit undoes it, the search applies it again


@torch.no_grad()
def gaussian_fit(mapping: nn.Module, style_dim: int, samples: int = FIT_SAMPLES, seed: int = 0,
                 chunk: int = 100_000, device=None, on_chunk: Callable[[int], object] | None = None) -> dict:
    """Per-dimension mean/std of LeakyReLU(5)(mapping(z)): the space where PULSE's latent is Gaussian.

    LeakyReLU(5) undoes the mapping's final LeakyReLU(0.2); the search maps its latent back with 0.2.
    Computed in chunks from a fixed seed so it is reproducible and fits in memory; ``on_chunk(n)`` is told
    after each (a progress bar: a million samples take a minute on a CPU).
    """
    device = device or next(mapping.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    total = torch.zeros(style_dim, dtype=torch.float64)
    total_sq = torch.zeros(style_dim, dtype=torch.float64)
    done = 0
    while done < samples:
        n = min(chunk, samples - done)
        z = torch.randn(n, style_dim, generator=rng).to(device)
        w = F.leaky_relu(mapping(z), negative_slope=1 / MAPPING_SLOPE).double().cpu()
        total += w.sum(0)
        total_sq += w.pow(2).sum(0)
        done += n
        if on_chunk:
            on_chunk(n)
    mean = total / samples
    std = (total_sq / samples - mean.pow(2)).clamp_min(0).sqrt()
    return {"mean": mean.float(), "std": std.float(), "samples": samples, "seed": seed}


def fit_progress(samples: int):
    """The progress bar ``gaussian_fit`` reports to, on stderr."""
    return progress_bar(samples, "Gaussian fit of the mapping output")


def write_generator_file(generator: nn.Module, out, metadata: dict, half: bool = False,
                         fit_samples: int = FIT_SAMPLES, device=None) -> Path:
    """A generator file with a fresh Gaussian fit of its mapping output (what the search samples from), fitted on
    ``device`` with a progress bar; trained and converted generators alike end here. An architecture that keeps
    the average w (StyleGAN2's truncation centre) gets it here when its training or source left it unset."""
    kept = getattr(generator.mapping, "w_avg", None)
    if kept is not None and not kept.any():
        kept.copy_(generator.average_w())
    with fit_progress(fit_samples) as bar:
        fit = gaussian_fit(generator.mapping.to(device) if device else generator.mapping, generator.style_dim,
                           samples=fit_samples, device=device, on_chunk=bar.update)
    generator.cpu()
    return save_generator(out, generator, fit, {**metadata, "resolution": generator.resolution}, half=half)


def save_generator(path, generator: nn.Module, fit: dict, metadata: dict | None = None, half: bool = False) -> Path:
    """Write a generator file atomically (temp file + rename); a failed write is one PulseError line."""
    state = file_state(generator, half)
    payload = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "config": stored_config(generator.config),
        "state_dict": state,
        "gaussian_fit": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in fit.items()},
        "metadata": dict(metadata or {}),
    }
    return save_payload(path, payload, "generator file")


def stored_config(config) -> dict:
    """The config as the file keeps it: fields at their default None (an option switched off, such as
    StyleGAN2's ``conv_clamp``) are not written, so a file that uses none of them stays readable by a pulse
    that predates them; loading fills them back in from the defaults."""
    unset = {f.name for f in fields(config) if f.default is None and getattr(config, f.name) is None}
    return {key: value for key, value in asdict(config).items() if key not in unset}


@dataclass
class LoadedGenerator:
    """A generator ready for the search: network (eval, frozen), Gaussian fit and metadata."""

    generator: nn.Module  # an architecture of ``pulse.models``
    mean: torch.Tensor
    std: torch.Tensor
    metadata: dict
    source: str
    compiled: Callable | None = field(default=None, repr=False)  # set by ``compile``

    def to(self, device):
        self.generator.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def compile(self, mode: str | None = None) -> "LoadedGenerator":
        """torch.compile the synthesis network, forward and backward, for the search: fused kernels make every
        step faster, at the price of a compile (about a minute on CPU) on the first step of each new batch size
        (after the second, one graph with a dynamic batch serves the rest). ``mode`` is torch.compile's
        ("reduce-overhead": CUDA graphs too). The module itself stays eager: state dicts are unchanged."""
        if not torch.cuda.is_available():  # inductor's C++ set-up warns that no CUDA runtime exists: irrelevant here
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        self.compiled = torch.compile(self.generator.synthesis, mode=mode)
        return self

    def synthesize(self, ws: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        """W+ and noise maps -> image, the way the search runs it (compiled after ``compile``, else eager)."""
        return (self.generator.synthesis if self.compiled is None else self.compiled)(ws, noise)


def read_generator_file(path) -> dict:
    """Load and validate a generator file without unpickling arbitrary objects."""
    return load_payload(path, FILE_FORMAT, FILE_VERSION, "generator file", f" (no '{FILE_FORMAT}' header)")


def load_generator(path, device="cpu") -> LoadedGenerator:
    """Build the generator described by a file; weights go to float32 on ``device``, frozen, in eval mode."""
    payload = read_generator_file(path)
    generator = build_generator(generator_config(payload["config"], origin=str(path)))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise PulseError(f"{path}: weights do not match the config ({str(err).splitlines()[0][:200]})")
    generator.eval().requires_grad_(False)
    fit = payload["gaussian_fit"]
    loaded = LoadedGenerator(generator, fit["mean"].float(), fit["std"].float(), dict(payload["metadata"]), str(path))
    return loaded.to(device)


def metadata_lines(meta: dict) -> list[str]:
    """A model file's metadata for a person: one "key: value" line each, then one line per training leg."""
    meta = dict(meta)
    commands = meta.pop("training_commands", None)
    lines = [f"  {key}: {value}" for key, value in meta.items() if value not in ("", None)]
    for leg in commands or []:
        start = "?" if leg.get("from_kimg") is None else f"{leg['from_kimg']:g}"
        lines.append(f"  trained from {start} kimg: {leg['command'] or '(from Python, no command)'}")
    return lines


def describe_generator(path: Path) -> list[str]:
    """What a generator file holds, for a person: architecture, size, training record, search settings."""
    payload = read_generator_file(path)
    config = generator_config(payload["config"], origin=str(path))
    meta = dict(payload.get("metadata", {}))
    parameters = sum(t.numel() for t in payload["state_dict"].values())
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in payload["state_dict"].values()})
    clamp = getattr(config, "conv_clamp", None)
    lines = [f"{path} ({path.stat().st_size / 1e6:.1f} MB)",
             f"  architecture: {config.architecture}, {config.resolution} px, {config.n_styles} styles x {config.style_dim}, "
             f"{config.mapping_layers} mapping layers, widths {','.join(map(str, config.channels))} "
             f"(4..{config.resolution} px), {parameters / 1e6:.2f} M parameters stored as {'/'.join(dtypes)}"
             + ("" if clamp is None else f", layer outputs clamped to +-{clamp:g} (conv_clamp)")]
    defaults = meta.pop("search_defaults", None)
    lines += metadata_lines(meta)
    settings = ", ".join(f"{k}={v}" for k, v in defaults.items()) if defaults else "none (PULSE's reference settings)"
    lines.append(f"  recommended search settings: {settings}")
    return lines
