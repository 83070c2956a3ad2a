"""StyleGAN2 (Karras et al. 2020, config E/F): the generator pulse trains, and the layout of NVIDIA's files.

Modulated + demodulated 3×3 convolutions, noise with a learned strength per layer, and "skip" toRGB outputs
summed across resolutions with [1, 3, 3, 1] FIR upsampling: no instance norm, so no droplet artefacts, and the
low resolutions learn first. Module and parameter names follow NVlabs' stylegan2-ada-pytorch
(``synthesis.b8.conv0.affine.weight``, ``mapping.fc0.weight``, ``noise_strength``, ``w_avg`` ...) and so do
the weight parametrisations (weights ~ N(0, 1), gains applied at run time), so an official state dict loads
strictly and renders the same. Everything is plain PyTorch (no custom CUDA ops): it runs on any device.

The modulation is applied to activations rather than to per-sample weights (NVlabs' "non-fused" path,
the same maths): one shared convolution for the whole batch, which CPUs run much faster than grouped ones.

``conv_clamp`` (NVlabs' option; stylegan2-ada-pytorch's train.py sets 256 unless --fp32) clamps each synthesis
layer's output after bias, activation and gain, and each toRGB output after its bias, to ±conv_clamp: it is
there for float16 training, but NVIDIA applies it in float32 too, so a converted network renders the same only
if pulse does. The sums of the upsampled image and each toRGB are not clamped (nor are they in NVIDIA's code).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PulseError
from .base import StyleGenerator

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2)
FIR = (1.0, 3.0, 3.0, 1.0)


def stylegan2_channels(resolution: int = 128, base: int = 3072, cap: int = 256) -> list[int]:
    """Widths per level 4 px .. resolution: ``min(base / res, cap)``, NVlabs' ``channel_base``/``channel_max``.
    The default (192/96/48/24 from 16 to 128 px) costs a CPU about what pulse's first compact generator did."""
    return [min(base // 2**level, cap) for level in range(2, int(math.log2(resolution)) + 1)]


@dataclass
class StyleGAN2Config:
    resolution: int = 128
    style_dim: int = 512
    mapping_layers: int = 2  # StyleGAN2-ADA's small-data choice; the official FFHQ models have 8
    mapping_lr_mul: float = 0.01
    channels: list[int] = field(default_factory=stylegan2_channels)  # one width per 4, 8, ... px
    conv_clamp: float | None = None  # clamp of every synthesis-layer and toRGB output (None: none)
    architecture: str = "stylegan2"

    def __post_init__(self):
        levels = math.log2(self.resolution) if self.resolution > 0 else -1
        if levels != int(levels) or not 8 <= self.resolution <= 1024:
            raise PulseError(f"generator resolution must be a power of two from 8 to 1024, got {self.resolution}")
        if len(self.channels) != int(levels) - 1:
            raise PulseError(f"generator needs one channel width per level 4..{self.resolution} px "
                             f"({int(levels) - 1}), got {len(self.channels)}")
        self.channels = [int(c) for c in self.channels]
        if self.conv_clamp is not None:
            if isinstance(self.conv_clamp, bool) or not isinstance(self.conv_clamp, numbers.Real) or \
                    not self.conv_clamp >= 0:
                raise PulseError(f"generator conv_clamp must be None or a number from 0, got {self.conv_clamp!r}")
            self.conv_clamp = float(self.conv_clamp)

    @property
    def n_styles(self) -> int:
        """One w per conv layer plus the last toRGB: 2·log2(res) − 2 (NVlabs' ``num_ws``)."""
        return 2 * len(self.channels)

    @classmethod
    def official_ffhq(cls, resolution: int = 1024) -> "StyleGAN2Config":
        """NVIDIA's FFHQ StyleGAN2 (config F: channel_base 32768, channel_max 512, 8 mapping layers)."""
        return cls(resolution=resolution, mapping_layers=8, channels=stylegan2_channels(resolution, 32768, 512))


# --- FIR resampling (upfirdn2d in plain PyTorch) -------------------------------------------------------------

def fir_kernel() -> torch.Tensor:
    """The normalised 4×4 separable [1, 3, 3, 1] low-pass kernel."""
    k = torch.tensor(FIR)
    k = k[:, None] * k[None, :]
    return k / k.sum()


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int], gain: float = 1.0,
               stride: int = 1) -> torch.Tensor:
    """Pad by (before, after) on both axes, then apply the kernel per channel (the kernel is symmetric)."""
    channels = x.size(1)
    weight = (kernel * gain).to(x.dtype)[None, None].expand(channels, 1, -1, -1)
    return F.conv2d(F.pad(x, (pad[0], pad[1], pad[0], pad[1])), weight, stride=stride, groups=channels)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """×2 by zero insertion and the FIR kernel (gain 4 keeps the mean)."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, h, 2, w, 2)
    up[:, :, :, 0, :, 0] = x
    return fir_filter(up.view(n, c, 2 * h, 2 * w), kernel, (2, 1), gain=4.0)


def downsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """÷2: FIR low-pass, then every second pixel."""
    return fir_filter(x, kernel, (1, 1), stride=2)


# --- layers --------------------------------------------------------------------------------------------------

class FullyConnectedLayer(nn.Module):
    """Equalised-lr linear layer (NVlabs' parametrisation: weight ~ N(0, 1/lr_mul²), gains at run time)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x):
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN if self.activation else x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: bool = False, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """Conv whose input channels are scaled per sample by ``styles`` and whose output channels are rescaled
    to unit expected variance (demodulation); with ``up`` a stride-2 transposed conv + FIR low-pass."""
    x = x * styles.to(x.dtype)[:, :, None, None]
    w = weight.to(x.dtype)
    if up:
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        x = fir_filter(x, kernel, (1, 1), gain=4.0)
    else:
        x = F.conv2d(x, w, padding=weight.size(-1) // 2)
    if demodulate:
        # sum over (in, kh, kw) of (w * s)^2 per sample and output channel
        dcoefs = (styles.square() @ weight.square().sum((2, 3)).t() + 1e-8).rsqrt()
        x = x * dcoefs.to(x.dtype)[:, :, None, None]
    return x


def clamp_output(x: torch.Tensor, conv_clamp: float | None) -> torch.Tensor:
    """NVlabs' ``bias_act(..., clamp=conv_clamp)``: the last step of a synthesis layer or toRGB."""
    return x if conv_clamp is None else x.clamp(-conv_clamp, conv_clamp)


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (optionally ×2), + noise · strength, + bias, LeakyReLU·√2, clamped to ±conv_clamp."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, resolution: int, up: bool = False,
                 conv_clamp: float | None = None):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp
        self.affine = FullyConnectedLayer(style_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", fir_kernel())

    def forward(self, x, w, noise):
        # no weight gain: demodulation normalises whatever scale the weights have
        x = modulated_conv2d(x, self.weight, self.affine(w), up=self.up, kernel=self.resample_filter)
        x = x + noise.to(x.dtype) * self.noise_strength.to(x.dtype)
        x = F.leaky_relu(x + self.bias.to(x.dtype)[None, :, None, None], LRELU_SLOPE) * LRELU_GAIN
        return clamp_output(x, self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 conv to RGB, not demodulated, + bias, clamped to ±conv_clamp (NVlabs' ToRGBLayer)."""

    def __init__(self, in_channels: int, style_dim: int, out_channels: int = 3, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(style_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x, w):
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        return clamp_output(x + self.bias.to(x.dtype)[None, :, None, None], self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (learned 4×4 constant | ×2 conv0), conv1, and a toRGB added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, resolution: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, style_dim, resolution, up=True,
                                        conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, style_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, style_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", fir_kernel())
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(self, x, img, ws, noise):
        """ws: (B, num_conv + 1, dim) — conv layers' styles, then toRGB's; noise: one map per conv layer."""
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.size(0), -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise[0])
        else:
            x = self.conv0(x, ws[:, 0], noise[0])
            x = self.conv1(x, ws[:, 1], noise[1])
        y = self.torgb(x, ws[:, self.num_conv]).float()
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ (B, n_styles, dim) and noise maps -> image in about [-1, 1]."""

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.resolutions = [4 * 2**i for i in range(len(config.channels))]
        for i, res in enumerate(self.resolutions):
            in_channels = config.channels[i - 1] if i else 0
            self.add_module(f"b{res}", SynthesisBlock(in_channels, config.channels[i], config.style_dim, res,
                                                      conv_clamp=config.conv_clamp))
        self.n_styles = config.n_styles

    def blocks(self):
        return [getattr(self, f"b{res}") for res in self.resolutions]

    def forward(self, ws, noise):
        x = img = None
        w_index = n_index = 0
        for block in self.blocks():
            # consecutive blocks share a w: the toRGB of one and the first conv of the next (NVlabs' layout)
            x, img = block(x, img, ws[:, w_index:w_index + block.num_conv + 1],
                           noise[n_index:n_index + block.num_conv])
            w_index += block.num_conv
            n_index += block.num_conv
        return img


class MappingNetwork(nn.Module):
    """z -> w: normalise to unit second moment, then ``mapping_layers`` dense layers with a low lr multiplier.
    ``w_avg`` tracks the mean w during training (truncation; kept for the official layout)."""

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.num_layers = config.mapping_layers
        for i in range(config.mapping_layers):
            self.add_module(f"fc{i}", FullyConnectedLayer(config.style_dim, config.style_dim,
                                                          lr_mul=config.mapping_lr_mul, activation=True))
        self.register_buffer("w_avg", torch.zeros(config.style_dim))

    def forward(self, z):
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class StyleGAN2Generator(StyleGenerator):
    """mapping (z -> w) + synthesis (W+ -> image); the interface the search and the trainer use."""

    def __init__(self, config: StyleGAN2Config | None = None):
        super().__init__()
        self.config = config or StyleGAN2Config()
        self.mapping = MappingNetwork(self.config)
        self.synthesis = SynthesisNetwork(self.config)

    def noise_shapes(self) -> list[tuple[int, int]]:
        """One noise map per conv layer: 4, 8, 8, 16, 16, ..., resolution, resolution."""
        return [(res, res) for block in self.synthesis.blocks() for res in [block.resolution] * block.num_conv]
