"""The discriminators that train the generators; each mirrors its generator's widths level by level.

- ``Discriminator`` (for StyleGAN-1): DCGAN-style, per level a 3×3 conv and a 4×4 stride-2 conv, LeakyReLU(0.2).
- ``ResidualDiscriminator`` (for StyleGAN2, config E): per level two 3×3 convs (the second ÷2 through the FIR
  filter) beside a 1×1 ÷2 skip, NVlabs' names (b128 … b4).

Both end in a minibatch-stddev feature at 4×4 (lets D see a lack of variety, a guard against mode collapse)
and a dense head giving one logit per image; weights use the equalised learning rate, like the generators',
so both networks share Adam settings.

- ``VGGDiscriminator`` (for the SR trainer, ``sr_loop``): SRGAN/ESRGAN's, plain convs with BatchNorm, trained
  with SRResNet's Adam settings; no minibatch stddev (each SR output is tied to its own input: no mode collapse).
- ``UNetDiscriminator`` (for the SR trainer): Real-ESRGAN's, a U-Net with spectral normalisation giving a
  realness logit per pixel, so it can point at a local artefact instead of judging the whole face at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.stylegan1 import LRELU_SLOPE, EqualLinear
from ..models.stylegan2 import (
    LRELU_GAIN,
    FullyConnectedLayer,
    downsample2d,
    fir_filter,
    fir_kernel,
)

MBSTD_GROUP = 4


@dataclass
class DiscriminatorConfig:
    resolution: int
    channels: list[int]  # one width per level, 4 px first: the generator's list
    feature_weight: float = 1.0  # HybridDiscriminator: the weight of the face-feature heads' logit


class ScaledConv2d(nn.Module):
    """Conv with equalised learning rate (weights ~ N(0, 1), scaled at run time) and optional stride."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, gain: float = math.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = gain / math.sqrt(in_ch * kernel_size**2)
        self.stride = stride
        self.padding = (kernel_size - 1) // 2 if stride == 1 else (kernel_size - stride) // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class DownBlock(nn.Sequential):
    """Same-size 3×3 conv, then a 4×4 stride-2 conv to half the size, each with LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(ScaledConv2d(in_ch, in_ch, 3), nn.LeakyReLU(LRELU_SLOPE),
                         ScaledConv2d(in_ch, out_ch, 4, stride=2), nn.LeakyReLU(LRELU_SLOPE))


def minibatch_stddev(x: torch.Tensor, group: int = MBSTD_GROUP) -> torch.Tensor:
    """Append one channel: the average feature stddev over groups of consecutive samples."""
    n, c, h, w = x.shape
    g = math.gcd(group, n)
    y = x.float().view(-1, g, c, h, w)
    y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # one value per group
    y = y.repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Image in [-1, 1] (B, 3, res, res) -> realness logit (B,)."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        widths = list(reversed(config.channels))  # res, res/2, ..., 4
        if 4 * 2 ** (len(widths) - 1) != config.resolution:
            raise ValueError(f"{len(widths)} widths do not fit resolution {config.resolution}")
        self.from_rgb = nn.Sequential(ScaledConv2d(3, widths[0], 1), nn.LeakyReLU(LRELU_SLOPE))
        self.blocks = nn.Sequential(*(DownBlock(a, b) for a, b in zip(widths[:-1], widths[1:])))
        top = widths[-1]
        self.head_conv = nn.Sequential(ScaledConv2d(top + 1, top, 3), nn.LeakyReLU(LRELU_SLOPE))
        self.head = nn.Sequential(EqualLinear(top * 16, top), nn.LeakyReLU(LRELU_SLOPE), EqualLinear(top, 1, gain=1.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_rgb(images))
        x = self.head_conv(minibatch_stddev(x))
        return self.head(x.flatten(1)).squeeze(1)


class Conv2dLayer(nn.Module):
    """Equalised-lr conv (NVlabs' Conv2dLayer) with optional FIR ÷2 downsampling and LeakyReLU·√2."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, bias: bool = True, activation: bool = True,
                 down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_ch * kernel_size**2)
        self.activation, self.down = activation, down
        if down:
            self.register_buffer("resample_filter", fir_kernel())

    def forward(self, x, gain: float = 1.0):
        w = self.weight * self.weight_gain
        k = self.weight.size(-1)
        if self.down and k == 1:
            x = F.conv2d(downsample2d(x, self.resample_filter), w)
        elif self.down:  # low-pass with room for the kernel, then a stride-2 conv
            x = F.conv2d(fir_filter(x, self.resample_filter, ((k + 1) // 2, (k + 1) // 2)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=k // 2)
        if self.bias is not None:
            x = x + self.bias[None, :, None, None]
        return F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain) if self.activation else x * gain


class ResidualBlock(nn.Module):
    """StyleGAN2's residual D block: two 3×3 convs (the second ÷2) beside a 1×1 ÷2 skip, summed at √½ each."""

    def __init__(self, in_ch: int, tmp_ch: int, out_ch: int):
        super().__init__()
        if in_ch == 0:
            self.fromrgb = Conv2dLayer(3, tmp_ch, 1)
        self.conv0 = Conv2dLayer(tmp_ch, tmp_ch, 3)
        self.conv1 = Conv2dLayer(tmp_ch, out_ch, 3, down=True)
        self.skip = Conv2dLayer(tmp_ch, out_ch, 1, bias=False, activation=False, down=True)

    def forward(self, x):
        if hasattr(self, "fromrgb"):
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


class Epilogue(nn.Module):
    """4×4: minibatch stddev, a 3×3 conv, a dense layer and the logit."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2dLayer(channels + 1, channels, 3)
        self.fc = FullyConnectedLayer(channels * 16, channels, activation=True)
        self.out = FullyConnectedLayer(channels, 1)

    def forward(self, x):
        x = self.conv(minibatch_stddev(x))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


class ResidualDiscriminator(nn.Module):
    """StyleGAN2's residual discriminator (config E), NVlabs' names: b128 ... b8, then b4 (the epilogue).
    Image in [-1, 1] (B, 3, res, res) -> realness logit (B,)."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        widths = {4 * 2**i: c for i, c in enumerate(config.channels)}
        if max(widths) != config.resolution:
            raise ValueError(f"{len(widths)} widths do not fit resolution {config.resolution}")
        self.resolutions = sorted((r for r in widths if r > 4), reverse=True)
        for res in self.resolutions:
            first = res == config.resolution
            self.add_module(f"b{res}", ResidualBlock(0 if first else widths[res], widths[res], widths[res // 2]))
        self.b4 = Epilogue(widths[4])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for res in self.resolutions:
            x = getattr(self, f"b{res}")(x)
        return self.b4(x)


class VGGDiscriminator(nn.Module):
    """SRGAN's D, narrowed for CPUs: per level a 3×3 conv and a 3×3 stride-2 conv, each BatchNorm (none on the
    first) and LeakyReLU(0.2), width doubling from ``width`` up to ``max_width``, down to 4×4; then dense 100,
    LeakyReLU and the logit. Image in [-1, 1] (B, 3, res, res) -> realness logit (B,).

    ``spectral_norm``: SN-GAN's form of the same D (Miyato et al. 2018): no BatchNorm, every conv and dense layer
    spectrally normalised, so D stays 1-Lipschitz and cannot hand G the ever-larger gradients of a D that has
    won (what the plain one did here within a kimg or two)."""

    def __init__(self, resolution: int, width: int = 32, max_width: int = 256, spectral_norm: bool = False):
        super().__init__()
        levels = int(math.log2(resolution)) - 2
        if resolution < 8 or 4 * 2**levels != resolution or width < 1:
            raise ValueError(f"resolution {resolution}, width {width}: needs a power of two >= 8 and a width >= 1")
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda layer: layer)
        layers, in_ch = [], 3
        for level in range(levels):
            out_ch = min(width << level, max_width)
            for stride in (1, 2):
                first = not layers
                layers.append(sn(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=first or spectral_norm)))
                if not (first or spectral_norm):
                    layers.append(nn.BatchNorm2d(out_ch))
                layers.append(nn.LeakyReLU(LRELU_SLOPE))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(sn(nn.Linear(in_ch * 16, 100)), nn.LeakyReLU(LRELU_SLOPE), sn(nn.Linear(100, 1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1)).squeeze(1)


class UNetDiscriminator(nn.Module):
    """Real-ESRGAN's U-Net D, narrowed for CPUs: a 3×3 conv, three 4×4 stride-2 convs (width doubling), then back
    up by bilinear ×2 + 3×3 conv with the encoder's skips added, two 3×3 convs and a 3×3 conv to one logit per
    pixel. Every conv but the first and the last is spectrally normalised (D stays Lipschitz, which Real-ESRGAN
    found keeps the artefacts of a per-pixel D down); LeakyReLU(0.2), no normalisation layers.
    Image in [-1, 1] (B, 3, H, W), H and W multiples of 8 -> realness logits (B, H, W)."""

    def __init__(self, width: int = 16):
        super().__init__()
        if width < 1:
            raise ValueError(f"width {width}: needs 1 or more")
        sn = nn.utils.parametrizations.spectral_norm
        w = width
        self.conv_in = nn.Conv2d(3, w, 3, padding=1)
        self.down = nn.ModuleList(sn(nn.Conv2d(a, b, 4, stride=2, padding=1, bias=False))
                                  for a, b in ((w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)))
        self.up = nn.ModuleList(sn(nn.Conv2d(a, b, 3, padding=1, bias=False))
                                for a, b in ((8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w)))
        self.refine = nn.Sequential(sn(nn.Conv2d(w, w, 3, padding=1, bias=False)), nn.LeakyReLU(LRELU_SLOPE),
                                    sn(nn.Conv2d(w, w, 3, padding=1, bias=False)), nn.LeakyReLU(LRELU_SLOPE),
                                    nn.Conv2d(w, 1, 3, padding=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] % 8 or images.shape[-2] % 8:
            raise ValueError(f"image size {tuple(images.shape[-2:])}: needs multiples of 8")
        x = F.leaky_relu(self.conv_in(images), LRELU_SLOPE)
        skips = [x]
        for conv in self.down:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            skips.append(x)
        skips.pop()  # the bottleneck itself
        for conv in self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = F.leaky_relu(conv(x), LRELU_SLOPE) + skips.pop()
        return self.refine(x).squeeze(1)
