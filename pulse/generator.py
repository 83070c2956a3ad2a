"""StyleGAN-like generator: mapping network + style-modulated synthesis network.

One class serves the compact generator pulse trains and ships, and the official FFHQ StyleGAN-1 1024 model
PULSE uses: module and parameter names follow the layout of PULSE's ``synthesis.pt`` / ``mapping.pt``
(``blocks.4x4.epi1.style_mod.lin.weight``, ``dense0.weight``, ...), so those state dicts load strictly into
``Generator.synthesis`` / ``Generator.mapping``. Widths, depth and resolution come from ``GeneratorConfig``.

The generator *file* (``save_generator`` / ``load_generator``) is a plain dict of tensors, strings and
numbers, readable with ``torch.load(weights_only=True)``: config, weights, the Gaussian fit of the mapping
output that the search needs, and metadata (resolution, alignment convention, data, licence).
"""

from __future__ import annotations

import logging
import math
import sys
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import PulseError
from .files import atomic_path, load_payload

FILE_FORMAT = "pulse-generator"
FILE_VERSION = 2  # 2: config["architecture"] (files without it are StyleGAN-1)
LRELU_SLOPE = 0.2


def official_channels(resolution: int = 1024) -> list[int]:
    """StyleGAN-1's widths: 512 up to 32 px, then halving (fmap_base 8192, fmap_max 512)."""
    return [min(8192 // 2 ** (level - 1), 512) for level in range(2, int(math.log2(resolution)) + 1)]


def compact_channels(resolution: int = 128) -> list[int]:
    """pulse's small default: 256 wide at 4-8 px, halving each level after (16 at 128 px); ~3 s/face on CPU."""
    return [min(256, 2048 // 2**level) for level in range(2, int(math.log2(resolution)) + 1)]


@dataclass
class GeneratorConfig:
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
    def official_ffhq(cls) -> "GeneratorConfig":
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

    def __init__(self, config: GeneratorConfig):
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

    def __init__(self, config: GeneratorConfig):
        layers = OrderedDict(pixel_norm=PixelNorm())
        for i in range(config.mapping_layers):
            layers[f"dense{i}"] = EqualLinear(config.style_dim, config.style_dim, lr_mul=config.mapping_lr_mul)
            layers[f"dense{i}_act"] = nn.LeakyReLU(LRELU_SLOPE)
        super().__init__(layers)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    """mapping (z -> w) + synthesis (W+ -> image). Images come out in about [-1, 1]."""

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config or GeneratorConfig()
        self.mapping = Mapping(self.config)
        self.synthesis = Synthesis(self.config)

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def n_styles(self) -> int:
        return self.config.n_styles

    @property
    def style_dim(self) -> int:
        return self.config.style_dim

    def noise_shapes(self) -> list[tuple[int, int]]:
        """Spatial size of each layer's noise map: 4, 4, 8, 8, ..., resolution, resolution."""
        return [(4 * 2 ** (i // 2),) * 2 for i in range(self.n_styles)]

    def random_noise(self, batch: int, generator: torch.Generator | None = None, device=None):
        device = device or self.synthesis.torgb.weight.device
        return [torch.randn(batch, 1, h, w, generator=generator).to(device) for h, w in self.noise_shapes()]

    def forward(self, z=None, ws=None, noise=None):
        """Render from z (B, style_dim) via the mapping, or from ready W+ latents ``ws`` (B, n_styles, dim)."""
        if ws is None:
            ws = self.mapping(z).unsqueeze(1).expand(-1, self.n_styles, -1)
        if ws.shape[1:] != (self.n_styles, self.style_dim):
            raise ValueError(f"ws must be (B, {self.n_styles}, {self.style_dim}), got {tuple(ws.shape)}")
        if noise is None:
            noise = self.random_noise(ws.size(0), device=ws.device)
        return self.synthesis(ws, noise)


@torch.no_grad()
def gaussian_fit(mapping: nn.Module, style_dim: int, samples: int = 1_000_000, seed: int = 0,
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
        w = F.leaky_relu(mapping(z), negative_slope=5.0).double().cpu()
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
    import click

    return click.progressbar(length=samples, label="Gaussian fit of the mapping output", file=sys.stderr)


def save_generator(path, generator: nn.Module, fit: dict, metadata: dict | None = None, half: bool = False):
    """Write a generator file atomically (temp file + rename)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in generator.state_dict().items()}
    payload = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "config": asdict(generator.config),
        "state_dict": state,
        "gaussian_fit": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in fit.items()},
        "metadata": dict(metadata or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


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
    from .models import build_generator, generator_config

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
