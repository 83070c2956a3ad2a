"""pulse: face super-resolution by latent-space exploration (PULSE, Menon et al., CVPR 2020).

It invents a plausible face that downscales to the input; it never recovers the true face. Do not use
its output to identify anyone.

The names below are imported on first use, so that ``pulse --help`` and other light uses do not pay for
loading torch.
"""

from importlib import import_module

from .errors import PulseError

_EXPORTS = {
    "upsample": ".api", "upsample_samples": ".api", "release_models": ".api", "Upsampler": ".api",
    "Result": ".upsampling",
    "open_upsampler": ".api",
    "FeedForwardUpsampler": ".feedforward",
    "open_generator": ".weights.resolve", "load_generator": ".models.generator_file",
    "StyleGAN1Generator": ".models.stylegan1", "StyleGAN1Config": ".models.stylegan1",
    "StyleGAN2Generator": ".models.stylegan2", "StyleGAN2Config": ".models.stylegan2",
}

__all__ = [*_EXPORTS, "PulseError"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pulse' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
