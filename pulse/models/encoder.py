"""The latent encoder: a small CNN from an LR face to where the search should start (hybrid inversion).

It predicts the search's own variable, the latent in the Gaussianised space of the generator's mapping output
(``search.latent_to_w``), on the sphere of radius sqrt(dim) where random starts lie. The search then only refines
it, so a few steps do what a random start needs a hundred for.

The encoder file belongs to one generator (its sha256) and one scale; it carries the search settings measured to
keep quality from its start (fewer steps), which apply over the generator's own and under what the user gives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PulseError
from ..files import file_state, load_payload, save_payload
from ..resample import resize
from .generator_file import metadata_lines

ENCODER_FILE_FORMAT = "pulse-encoder"
ENCODER_FILE_VERSION = 1
DEFAULT_CHANNELS = (64, 128, 128)  # widths at the LR size, then at each halving


@dataclass
class EncoderConfig:
    lr_size: int  # the LR face's side: generator resolution / scale
    style_dim: int
    channels: list[int] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    hidden: int = 384

    def __post_init__(self):
        if self.lr_size < 4 or self.lr_size & (self.lr_size - 1):
            raise ValueError(f"the encoder's LR size must be a power of two >= 4, got {self.lr_size}")


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


class LatentEncoder(nn.Module):
    """LR image in [0, 1] (B, 3, s, s) -> one latent row (B, 1, dim) on the sphere of radius sqrt(dim): residual
    stages that halve the image down to at most 4 x 4 (inputs of 32 px and up get more halvings at the last width),
    then a two-layer head. One row, not W+: the generator's own faces, its training data, come from one w."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        widths = list(config.channels)
        halvings = max(len(widths) - 1, (config.lr_size // 4).bit_length() - 1)
        widths += [widths[-1]] * (halvings + 1 - len(widths))
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1), _Residual(widths[0])]
        for before, after in zip(widths, widths[1:]):
            layers += [nn.Conv2d(before, after, 4, stride=2, padding=1), _Residual(after)]
        self.trunk = nn.Sequential(*layers)
        side = config.lr_size >> halvings
        self.head = nn.Sequential(nn.Flatten(), nn.LeakyReLU(0.2), nn.Linear(widths[-1] * side * side, config.hidden),
                                  nn.LeakyReLU(0.2), nn.Linear(config.hidden, config.style_dim))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        latent = self.head(self.trunk(lr * 2 - 1))
        return on_sphere(latent).unsqueeze(1)


def on_sphere(latent: torch.Tensor) -> torch.Tensor:
    """Each vector (last dim) scaled to norm sqrt(dim): the sphere the search's random starts lie on."""
    return latent * latent.shape[-1] ** 0.5 / (latent.norm(dim=-1, keepdim=True) + 1e-8)


@dataclass
class LoadedEncoder:
    """An encoder ready to run: network (eval, frozen), what it belongs to, where it came from."""

    model: LatentEncoder
    generator_sha256: str
    scale: int
    search_defaults: dict
    metadata: dict
    source: str

    def to(self, device):
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, s, s) in [0, 1] -> starting latents (B, 1, dim), on the CPU. An LR of another size than the
        encoder's is resized to it first: a start needs only to be near."""
        device = next(self.model.parameters()).device
        lr = lr.to(device=device, dtype=torch.float32)
        if lr.shape[-1] != self.model.config.lr_size or lr.shape[-2] != self.model.config.lr_size:
            lr = resize(lr, self.model.config.lr_size)
        return self.model(lr).cpu()

    def check_generator(self, generator_sha256: str, generator_name: str) -> None:
        """A one-line PulseError unless this encoder was trained for that generator."""
        if generator_sha256 != self.generator_sha256:
            raise PulseError(f"{self.source}: an encoder for another generator (sha256 {self.generator_sha256[:12]}…, "
                             f"not {generator_name}'s {generator_sha256[:12]}…); train one with `pulse train-encoder`")


def save_encoder(path, model: LatentEncoder, generator_sha256: str, scale: int, search_defaults: dict,
                 metadata: dict | None = None, half: bool = False) -> Path:
    """Write an encoder file atomically."""
    payload = {"format": ENCODER_FILE_FORMAT, "version": ENCODER_FILE_VERSION, "config": asdict(model.config),
               "state_dict": file_state(model, half), "generator_sha256": generator_sha256, "scale": int(scale),
               "search_defaults": dict(search_defaults), "metadata": dict(metadata or {})}
    return save_payload(path, payload, "encoder file")


def read_encoder_file(path) -> dict:
    return load_payload(path, ENCODER_FILE_FORMAT, ENCODER_FILE_VERSION, "encoder file",
                        f" (no '{ENCODER_FILE_FORMAT}' header; `pulse train-encoder` makes them)")


def load_encoder(path, device="cpu") -> LoadedEncoder:
    payload = read_encoder_file(path)
    try:
        model = LatentEncoder(EncoderConfig(**payload["config"]))
        model.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
    except (TypeError, ValueError, RuntimeError) as err:
        raise PulseError(f"{path}: encoder weights do not match its config ({str(err).splitlines()[0][:200]})")
    model.eval().requires_grad_(False)
    return LoadedEncoder(model, payload["generator_sha256"], payload["scale"], dict(payload["search_defaults"]),
                         dict(payload["metadata"]), str(path)).to(device)


def describe_encoder(path: Path) -> list[str]:
    """What an encoder file holds, for a person (``pulse weights info``)."""
    payload = read_encoder_file(path)
    config = payload["config"]
    parameters = sum(t.numel() for t in payload["state_dict"].values())
    defaults = ", ".join(f"{k}={v}" for k, v in payload["search_defaults"].items()) or "none"
    lines = [f"{path} ({path.stat().st_size / 1e6:.1f} MB)",
             f"  latent encoder: {config['lr_size']} px LR -> a {config['style_dim']}-d latent, x{payload['scale']}, "
             f"widths {','.join(map(str, config['channels']))}, {parameters / 1e6:.2f} M parameters",
             f"  generator sha256: {payload['generator_sha256']}",
             f"  search settings from its start: {defaults}"]
    return lines + metadata_lines(payload["metadata"])
