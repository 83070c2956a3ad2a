"""SRResNet (Ledig et al. 2017, SRGAN's generator): the feed-forward alternative to the search.

One pass maps an LR face to its HR face: fast, deterministic and close to the person, but it does not promise
that its output downscales back to the input (the search does). The design follows SRResNet — a 9×9 input conv,
residual blocks (BatchNorm optional: ESRGAN showed it is not needed and costs speed), a long skip, then one
conv + PixelShuffle(2) + PReLU per factor of two, so ×2, ×4 and ×8 come from one class — with three changes for
small CPUs: the width halves at each ×2 stage (most of the work happens at the LR size), the last ×2 is the
output conv itself (3·4 channels shuffled into RGB, as ESPCN: nothing runs at the full HR size), and the network
predicts a residual over the bicubic upscale (it learns the detail bicubic lacks, not the whole face).

The SR file mirrors the generator file: a plain dict read with ``weights_only=True`` (config, weights, metadata).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import PulseError
from ..files import file_state, load_payload, save_payload
from ..resample import resize
from .generator_file import metadata_lines

SR_FILE_FORMAT = "pulse-sr-model"
SR_FILE_VERSION = 1


@dataclass
class SRResNetConfig:
    scale: int = 8  # a power of two
    channels: int = 32  # width at the LR size; halves at each ×2 stage (at least MIN_STAGE_WIDTH)
    blocks: int = 8  # residual blocks at the LR size
    batch_norm: bool = False
    upsample: str = "pixelshuffle"  # the ×2 stages: "pixelshuffle" (sub-pixel conv) or "nearest" (+ conv)
    icnr: bool = False  # initialise the sub-pixel convs by ICNR (only how training starts; old files: False)

    def __post_init__(self):
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample {self.upsample!r}: choose {' or '.join(UPSAMPLE_MODES)}")
        if self.scale < 2 or self.scale & (self.scale - 1):
            raise ValueError(f"scale {self.scale}: must be a power of two, 2 or more")
        if self.channels < 1 or self.blocks < 0:
            raise ValueError(f"channels {self.channels}, blocks {self.blocks}: out of range")

    def stage_widths(self) -> list[int]:
        """Width after each ×2 stage before the output's own ×2."""
        return [max(self.channels >> (i + 1), MIN_STAGE_WIDTH) for i in range(int(math.log2(self.scale)) - 1)]


MIN_STAGE_WIDTH = 16
UPSAMPLE_MODES = ("pixelshuffle", "nearest")


class ResidualBlock(nn.Module):
    """conv-(BN)-PReLU-conv-(BN) plus the input: SRResNet's block."""

    def __init__(self, channels: int, batch_norm: bool):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), norm(), nn.PReLU(channels),
                                  nn.Conv2d(channels, channels, 3, padding=1), norm())

    def forward(self, x):
        return x + self.body(x)


def icnr_(conv: nn.Conv2d, factor: int = 2) -> nn.Conv2d:
    """ICNR (Aitken et al. 2017): give the factor² sub-pixel outputs of each channel one shared kernel, so that
    conv + PixelShuffle starts out as conv + nearest-neighbour upsampling. A randomly initialised sub-pixel conv
    instead starts with a period-``factor`` pattern that GAN training tends to amplify into a checkerboard."""
    out_channels = conv.out_channels // factor**2
    with torch.no_grad():
        seed_conv = nn.Conv2d(conv.in_channels, out_channels, conv.kernel_size, padding=conv.padding)
        conv.weight.copy_(seed_conv.weight.repeat_interleave(factor**2, dim=0))
        conv.bias.copy_(seed_conv.bias.repeat_interleave(factor**2, dim=0))
    return conv


class UpsampleStage(nn.Sequential):
    """×2 then PReLU: a conv to 4× the output width + PixelShuffle(2) (sub-pixel convolution, optionally
    ICNR-initialised), or nearest-neighbour ×2 + a conv (no sub-pixel pattern possible, 4× the conv cost)."""

    def __init__(self, in_ch: int, out_ch: int, mode: str = "pixelshuffle", icnr: bool = False):
        if mode == "nearest":
            layers = [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_ch, out_ch, 3, padding=1)]
        else:
            conv = nn.Conv2d(in_ch, out_ch * 4, 3, padding=1)
            layers = [icnr_(conv) if icnr else conv, nn.PixelShuffle(2)]
        super().__init__(*layers, nn.PReLU(out_ch))


class SRResNet(nn.Module):
    """LR image (B, 3, h, w) in [0, 1] -> (B, 3, h·scale, w·scale), about [0, 1] (not clamped: training sees
    the raw output; ``super_resolve`` clamps)."""

    def __init__(self, config: SRResNetConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.head = nn.Sequential(nn.Conv2d(3, c, 9, padding=4), nn.PReLU(c))
        self.body = nn.Sequential(*(ResidualBlock(c, config.batch_norm) for _ in range(config.blocks)),
                                  nn.Conv2d(c, c, 3, padding=1),
                                  nn.BatchNorm2d(c) if config.batch_norm else nn.Identity())
        widths = [c] + config.stage_widths()
        self.upsample = nn.Sequential(*(UpsampleStage(a, b, config.upsample, config.icnr)
                                        for a, b in zip(widths[:-1], widths[1:])))
        self.tail = nn.Sequential(nn.Conv2d(widths[-1], 3 * 4, 3, padding=1), nn.PixelShuffle(2))
        nn.init.zeros_(self.tail[0].weight)  # starts as plain bicubic: training adds detail from there
        nn.init.zeros_(self.tail[0].bias)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(lr)
        x = self.upsample(x + self.body(x))
        return resize(lr, (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)) + self.tail(x)


@dataclass
class LoadedSRModel:
    """A super-resolver ready to run: network (eval, frozen), metadata, where it came from."""

    model: SRResNet
    metadata: dict
    source: str

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def method(self) -> str:
        """"srgan" for a network trained adversarially (its file's stage "gan"), else "srresnet" (pixel loss)."""
        return "srgan" if self.metadata.get("stage") == "gan" else "srresnet"

    def to(self, device):
        self.model.to(device, memory_format=torch.channels_last)  # CPU convolutions run fastest channels-last
        return self

    @torch.no_grad()
    def super_resolve(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in [0, 1] -> (B, 3, h·scale, w·scale) in [0, 1]."""
        device = next(self.model.parameters()).device
        return self.model(lr.to(device).contiguous(memory_format=torch.channels_last)).clamp(0, 1).contiguous()


def save_sr_model(path, model: SRResNet, metadata: dict | None = None, half: bool = False) -> Path:
    """Write an SR file atomically (temp file + rename)."""
    payload = {"format": SR_FILE_FORMAT, "version": SR_FILE_VERSION, "architecture": "srresnet",
               "config": asdict(model.config), "state_dict": file_state(model, half),
               "metadata": dict(metadata or {})}
    return save_payload(path, payload, "SR model file")


def load_sr_model(path, device="cpu") -> LoadedSRModel:
    """Build the network an SR file describes; float32 on ``device``, frozen, in eval mode."""
    payload = load_payload(path, SR_FILE_FORMAT, SR_FILE_VERSION, "SR model file",
                           f" (no '{SR_FILE_FORMAT}' header: a generator file is for --method pulse)")
    try:
        model = SRResNet(SRResNetConfig(**payload["config"]))
    except (TypeError, ValueError) as err:
        raise PulseError(f"{path}: unknown SR model config ({err})")
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise PulseError(f"{path}: weights do not match the config ({str(err).splitlines()[0][:200]})")
    model.eval().requires_grad_(False)
    return LoadedSRModel(model, dict(payload["metadata"]), str(path)).to(device)


def describe_sr_model(path) -> list[str]:
    """What an SR file holds, for a person: network, size, scale, training record."""
    path = Path(path)
    payload = load_payload(path, SR_FILE_FORMAT, SR_FILE_VERSION, "SR model file")
    config = SRResNetConfig(**payload["config"])
    meta = payload["metadata"]
    parameters = sum(t.numel() for t in payload["state_dict"].values())
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in payload["state_dict"].values()})
    lines = [f"{path} ({path.stat().st_size / 1e6:.1f} MB)",
             f"  architecture: srresnet x{config.scale}, width {config.channels}, {config.blocks} residual blocks"
             f"{', BatchNorm' if config.batch_norm else ''}, {config.upsample} upsampling"
             f"{' (ICNR init)' if config.icnr else ''}, {parameters / 1e6:.2f} M parameters stored as "
             f"{'/'.join(dtypes)}"]
    return lines + metadata_lines(meta)
