"""StyleGAN-1 (Karras et al. 2019): mapping network + AdaIN-styled synthesis network.

The layout of PULSE's official FFHQ 1024 model: module and parameter names follow PULSE's ``synthesis.pt`` /
``mapping.pt`` (``blocks.4x4.epi1.style_mod.lin.weight``, ``dense0.weight``, ...), so those state dicts load
strictly into ``StyleGAN1Generator.synthesis`` / ``StyleGAN1Generator.mapping``. Also the architecture of
pulse's first, compact bundled generator. Widths, depth and resolution come from ``StyleGAN1Config``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PulseError
from .base import StyleGenerator

LRELU_SLOPE = 0.2


def official_channels(resolution: int = 1024) -> list[int]:
    """StyleGAN-1's widths: 512 up to 32 px, then halving (fmap_base 8192, fmap_max 512)."""
    return [min(8192 // 2 ** (level - 1), 512) for level in range(2, int(math.log2(resolution)) + 1)]


def compact_channels(resolution: int = 128) -> list[int]:
    """pulse's small default: 256 wide at 4-8 px, halving each level after (16 at 128 px); ~3 s/face on CPU."""
    return [min(256, 2048 // 2**level) for level in range(2, int(math.log2(resolution)) + 1)]


@dataclass
class StyleGAN1Config:
    resolution: int = 128
    style_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channels: list[int] = field(default_factory=compact_channels)  # one width per 4, 8, ... px
    fused_upsample_min_res: int = 128  # StyleGAN-1 uses a fused transposed conv from this output size on
    architecture: str = "stylegan1"

    def __post_init__(self):
        levels = math.log2(self.resolution) if self.resolution > 0 else -1
        if levels != int(levels) or not 32 <= self.resolution <= 1024:
            raise PulseError(f"generator resolution must be a power of two from 32 to 1024, got {self.resolution}")
        if len(self.channels) != int(levels) - 1:
            raise PulseError(
                f"generator needs one channel width per level 4..{self.resolution} px "
                f"({int(levels) - 1}), got {len(self.channels)}"
            )

    @property
    def n_styles(self) -> int:
        return 2 * (len(self.channels))

    @classmethod
    def official_ffhq(cls) -> "StyleGAN1Config":
        return cls(resolution=1024, style_dim=512, mapping_layers=8, channels=official_channels(1024))


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and a learning-rate multiplier (StyleGAN's MyLinear)."""

    def __init__(self, in_dim, out_dim, gain=math.sqrt(2), lr_mul=1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.w_mul = gain * in_dim**-0.5 * lr_mul
        self.b_mul = lr_mul

    def forward(self, x):
        return F.linear(x, self.weight * self.w_mul, self.bias * self.b_mul)


class Blur(nn.Module):
    """[1, 2, 1] low-pass filter applied after upsampling."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = k[:, None] * k[None, :]
        self.register_buffer("kernel", (k / k.sum())[None, None])

    def forward(self, x):
        return F.conv2d(x, self.kernel.expand(x.size(1), -1, -1, -1), padding=1, groups=x.size(1))


class EqualConv2d(nn.Module):
    """Equalised-lr conv; with ``upsample`` it doubles the size first (nearest, or fused transposed conv)."""

    def __init__(self, in_ch, out_ch, kernel_size, gain=math.sqrt(2), upsample=False, fused=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.w_mul = gain * (in_ch * kernel_size**2) ** -0.5
        self.upsample, self.fused = upsample, fused
        self.intermediate = Blur() if upsample else None

    def forward(self, x):
        w = self.weight * self.w_mul
        if self.upsample and self.fused:
            w = F.pad(w.permute(1, 0, 2, 3), (1, 1, 1, 1))
            w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
            x = F.conv_transpose2d(x, w, stride=2, padding=(w.size(-1) - 1) // 2)
        else:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = F.conv2d(x, w, padding=self.weight.size(-1) // 2)
        if self.intermediate is not None:
            x = self.intermediate(x)
        return x + self.bias.view(1, -1, 1, 1)


class NoiseInput(nn.Module):
    """Per-pixel noise map scaled by a learned per-channel weight."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))

    def forward(self, x, noise):
        return x + self.weight.view(1, -1, 1, 1).to(x.dtype) * noise.to(x.dtype)


class StyleMod(nn.Module):
    """AdaIN style: x * (1 + scale(w)) + shift(w)."""

    def __init__(self, style_dim, channels):
        super().__init__()
        self.lin = EqualLinear(style_dim, 2 * channels, gain=1.0)

    def forward(self, x, w):
        style = self.lin(w).view(-1, 2, x.size(1), 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class LayerEpilogue(nn.Module):
    """noise -> LeakyReLU -> InstanceNorm -> style."""

    def __init__(self, channels, style_dim):
        super().__init__()
        self.noise = NoiseInput(channels)
        self.top_epi = nn.Sequential(nn.LeakyReLU(LRELU_SLOPE), nn.InstanceNorm2d(channels))
        self.style_mod = StyleMod(style_dim, channels)

    def forward(self, x, w, noise):
        return self.style_mod(self.top_epi(self.noise(x, noise)), w)


class InputBlock(nn.Module):
    """4x4: learned constant, two styled layers."""

    def __init__(self, channels, style_dim):
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, channels, 4, 4))
        self.bias = nn.Parameter(torch.ones(channels))
        self.epi1 = LayerEpilogue(channels, style_dim)
        self.conv = EqualConv2d(channels, channels, 3)
        self.epi2 = LayerEpilogue(channels, style_dim)

    def forward(self, ws, noise):
        x = self.const.expand(ws.size(0), -1, -1, -1) + self.bias.view(1, -1, 1, 1)
        x = self.epi1(x, ws[:, 0], noise[0])
        return self.epi2(self.conv(x), ws[:, 1], noise[1])


class SynthesisBlock(nn.Module):
    """Doubles the resolution: upsampling conv and a plain conv, each followed by a styled epilogue."""

    def __init__(self, in_ch, out_ch, style_dim, fused):
        super().__init__()
        self.conv0_up = EqualConv2d(in_ch, out_ch, 3, upsample=True, fused=fused)
        self.epi1 = LayerEpilogue(out_ch, style_dim)
        self.conv1 = EqualConv2d(out_ch, out_ch, 3)
        self.epi2 = LayerEpilogue(out_ch, style_dim)

    def forward(self, x, ws, noise):
        x = self.epi1(self.conv0_up(x), ws[:, 0], noise[0])
        return self.epi2(self.conv1(x), ws[:, 1], noise[1])


class Synthesis(nn.Module):
    """W+ latents (B, n_styles, style_dim) and noise maps -> image in about [-1, 1]."""

    def __init__(self, config: StyleGAN1Config):
        super().__init__()
        ch = config.channels
        blocks = {"4x4": InputBlock(ch[0], config.style_dim)}
        for level in range(3, len(ch) + 2):
            res = 2**level
            fused = res >= config.fused_upsample_min_res
            blocks[f"{res}x{res}"] = SynthesisBlock(ch[level - 3], ch[level - 2], config.style_dim, fused)
        self.blocks = nn.ModuleDict(blocks)
        self.torgb = EqualConv2d(ch[-1], 3, 1, gain=1.0)

    def forward(self, ws, noise):
        x = None
        for i, block in enumerate(self.blocks.values()):
            pair = (ws[:, 2 * i : 2 * i + 2], noise[2 * i : 2 * i + 2])
            x = block(*pair) if x is None else block(x, *pair)
        return self.torgb(x)


class Mapping(nn.Sequential):
    """PixelNorm + dense layers with a low learning-rate multiplier: z -> w."""

    def __init__(self, config: StyleGAN1Config):
        layers = OrderedDict(pixel_norm=PixelNorm())
        for i in range(config.mapping_layers):
            layers[f"dense{i}"] = EqualLinear(config.style_dim, config.style_dim, lr_mul=config.mapping_lr_mul)
            layers[f"dense{i}_act"] = nn.LeakyReLU(LRELU_SLOPE)
        super().__init__(layers)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class StyleGAN1Generator(StyleGenerator):
    """mapping (z -> w) + synthesis (W+ -> image). Images come out in about [-1, 1]."""

    def __init__(self, config: StyleGAN1Config | None = None):
        super().__init__()
        self.config = config or StyleGAN1Config()
        self.mapping = Mapping(self.config)
        self.synthesis = Synthesis(self.config)

    def noise_shapes(self) -> list[tuple[int, int]]:
        """Spatial size of each layer's noise map: 4, 4, 8, 8, ..., resolution, resolution."""
        return [(4 * 2 ** (i // 2),) * 2 for i in range(self.n_styles)]
