"""Generator architectures by name. A generator file's config says which one built it; files written before
architectures had names are StyleGAN-1 (``stylegan1``)."""

from __future__ import annotations

from ..errors import PulseError
from .stylegan1 import StyleGAN1Config, StyleGAN1Generator
from .stylegan2 import StyleGAN2Config, StyleGAN2Generator

ARCHITECTURES = {"stylegan1": (StyleGAN1Config, StyleGAN1Generator), "stylegan2": (StyleGAN2Config, StyleGAN2Generator)}


def generator_config(config: dict, origin: str = "generator config"):
    """The architecture's config dataclass from a stored dict (``architecture`` missing: StyleGAN-1)."""
    config = dict(config)
    name = config.setdefault("architecture", "stylegan1")
    if name not in ARCHITECTURES:
        raise PulseError(f"{origin}: unknown generator architecture {name!r} (this pulse knows "
                         f"{', '.join(ARCHITECTURES)})")
    try:
        return ARCHITECTURES[name][0](**config)
    except TypeError as err:
        raise PulseError(f"{origin}: unknown generator config ({err})")


def build_generator(config):
    """A fresh, randomly initialised generator of the config's architecture."""
    return ARCHITECTURES[config.architecture][1](config)
