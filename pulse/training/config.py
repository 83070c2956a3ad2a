"""What defines a training run, and how given options, a resumed checkpoint and an init file combine."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PulseError
from ..models import ARCHITECTURES, generator_config
from ..models.stylegan1 import compact_channels
from ..models.stylegan2 import stylegan2_channels
from .augment import parse_policy
from .discriminators import Discriminator, DiscriminatorConfig, ResidualDiscriminator
from .projected import HybridDiscriminator, ProjectedDiscriminator
from .run_folder import resumed_config

DISCRIMINATORS = {"residual": ResidualDiscriminator, "dcgan": Discriminator, "projected": ProjectedDiscriminator,
                  "hybrid": HybridDiscriminator}
ARCHITECTURE = ("architecture", "resolution", "style_dim", "mapping_layers", "channels")


@dataclass
class TrainConfig:
    """Everything that defines a run. Stored in each checkpoint, so ``--resume`` alone continues it."""

    data: list[str]
    out: str
    architecture: str = "stylegan2"  # of the generator
    discriminator: str | None = None  # "residual", "dcgan", "projected" or "hybrid"; None: the architecture's own
    d_channels: list[int] | None = None  # D's widths per level from 4 px; None: the generator's
    feature_weight: float = 1.0  # hybrid D: weight of the face-feature heads beside the pixel D
    d_warmup_kimg: float = 0.0  # D alone (G frozen) for this many kimg first: a fresh D must not steer a trained G
    resolution: int = 128
    style_dim: int = 512
    mapping_layers: int | None = None  # None: 2 for stylegan2 (ADA's small-data choice), 8 for stylegan1
    channels: list[int] | None = None  # one width per level from 4 px; None: the architecture's default
    kimg: float = 2000.0  # training length in thousands of real images shown to D
    batch: int = 32  # images per optimiser step, over all processes and micro-batches
    grad_accum: int = 1  # micro-batches per process and step
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    r1_gamma: float | None = None  # None: StyleGAN2-ADA's heuristic 0.0002 * resolution² / batch (projected D: 0)
    ema_kimg: float = 10.0  # half-life of G_ema's average
    mixing_prob: float = 0.9
    augment: str = "translation"
    ada_target: float = 0.0  # > 0: each augmentation applies with an adaptive p aiming E[sign D(real)] here (ADA: 0.6)
    seed: int = 0
    checkpoint_every: float = 50.0  # kimg
    snapshot_every: float = 500.0  # kimg between checkpoints kept for good (latest.ckpt is overwritten); 0: none
    log_every: float = 1.0  # kimg
    device: str = "auto"
    cache_gb: float = 8.0  # decode the data into memory when this process's share fits
    fit_samples: int = 1_000_000  # latents for the Gaussian fit of the exported generator
    metrics_every: float = 0.0  # kimg between generator metrics in the log (FD, KID, precision/recall...); 0: never
    metrics_samples: int = 1000  # samples and real faces those metrics compare

    def __post_init__(self):
        self.data = [str(p) for p in self.data]
        self.out = str(self.out)
        if self.architecture not in ARCHITECTURES:
            raise PulseError(f"--architecture {self.architecture}: choose from {', '.join(ARCHITECTURES)}")
        if self.mapping_layers is None:
            self.mapping_layers = 2 if self.architecture == "stylegan2" else 8
        if self.channels is None:
            self.channels = default_channels(self.architecture, self.resolution) if self.resolution >= 4 else []
        self.channels = [int(c) for c in self.channels]
        if self.discriminator is None:
            self.discriminator = "residual" if self.architecture == "stylegan2" else "dcgan"
        if self.discriminator not in DISCRIMINATORS:
            raise PulseError(f"--discriminator {self.discriminator}: choose from {', '.join(DISCRIMINATORS)}")
        if self.d_channels is None:
            self.d_channels = list(self.channels)
        self.d_channels = [int(c) for c in self.d_channels]
        if len(self.d_channels) != len(self.channels) or min(self.d_channels, default=1) < 1:
            raise PulseError(f"--d-channels {','.join(map(str, self.d_channels))}: needs {len(self.channels)} "
                             "positive widths, one per level from 4 px")
        self.generator_config()  # a bad resolution or channel list fails here, before any data is read
        if self.r1_gamma is None:
            self.r1_gamma = 0.0 if self.discriminator == "projected" else 0.0002 * self.resolution**2 / self.batch
        checks = [("kimg", self.kimg > 0), ("batch", self.batch > 0), ("grad_accum", self.grad_accum > 0),
                  ("g_lr", self.g_lr > 0), ("d_lr", self.d_lr > 0), ("r1_gamma", self.r1_gamma >= 0),
                  ("ema_kimg", self.ema_kimg >= 0),
                  ("feature_weight", self.feature_weight >= 0), ("d_warmup_kimg", self.d_warmup_kimg >= 0), ("mixing_prob", 0 <= self.mixing_prob <= 1),
                  ("checkpoint_every", self.checkpoint_every > 0), ("snapshot_every", self.snapshot_every >= 0),
                  ("log_every", self.log_every > 0),
                  ("cache_gb", self.cache_gb >= 0), ("fit_samples", self.fit_samples > 0),
                  ("ada_target", 0 <= self.ada_target < 1), ("metrics_every", self.metrics_every >= 0), ("metrics_samples", self.metrics_samples >= 2),
                  ("device", self.device in ("auto", "cpu", "cuda"))]
        for name, ok in checks:
            if not ok:
                raise PulseError(f"--{name.replace('_', '-')} {getattr(self, name)}: out of range")
        try:
            parse_policy(self.augment)
        except ValueError as err:
            raise PulseError(f"--augment {self.augment}: {err}")

    def generator_config(self):
        return generator_config({key: getattr(self, key) for key in ARCHITECTURE})


def default_channels(architecture: str, resolution: int) -> list[int]:
    """Widths per level: the architecture's default (``stylegan2_channels`` or ``compact_channels``)."""
    if architecture == "stylegan2":
        return stylegan2_channels(resolution)
    return compact_channels(resolution)


def make_discriminator(config: TrainConfig, resolution: int):
    """The run's discriminator (``--discriminator``, ``--d-channels``) for generators of this resolution."""
    return DISCRIMINATORS[config.discriminator](DiscriminatorConfig(resolution, list(config.d_channels),
                                                                    config.feature_weight))


def resolve_config(given: dict, checkpoint: dict | None = None, init_config: dict | None = None,
                   origin: str = "") -> TrainConfig:
    """The run's config: options given explicitly, over a resumed checkpoint's config or an init file's shape.

    An architecture option that contradicts the checkpoint or generator file is an error, not an override.
    """
    given = {k: v for k, v in given.items() if v is not None}
    if checkpoint:
        base = {"architecture": "stylegan1", **checkpoint["config"]}  # runs from before the choice existed
    else:
        base = {k: init_config[k] for k in ARCHITECTURE} if init_config else {}
    return resumed_config(TrainConfig, given, base, ARCHITECTURE, origin, "training", show=_show)


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
