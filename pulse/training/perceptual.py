"""The perceptual loss of SR training: the distance between a frozen VGG16's features of SR and HR.

The trunk is the anti-aliased (blur-pooled, shift-tolerant) VGG16 of ST-LPIPS, whose weights ship in the
``stlpips-pytorch`` wheel (the eval extra), so it is there offline; it is rebuilt with that file's module names
and loaded strictly, as ``evaluation.stlpips`` does for the AlexNet trunk, without importing the package. The
eval metric (ST-LPIPS) uses the AlexNet trunk of the same wheel: training on another network than the one that
scores keeps the score from being optimised directly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..errors import PulseError
from ..evaluation.stlpips import BlurPool, InputScaling
from ..files import installed_package_file

VGG_PACKAGE, VGG_WEIGHTS = "stlpips_pytorch", "weights/vST0.0/vgg_shift_tolerant.pth"
LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")  # the output of each slice
# relu1_2 is left out: it is close to the pixels and shifts with them (the L1 term does that job); the deeper
# layers come almost free, as the full-size early convolutions that every layer needs are most of the cost
DEFAULT_LAYERS = ("relu2_2", "relu3_3", "relu4_3", "relu5_3")
_WIDTHS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _vgg_layers(slices: int) -> list[nn.Module]:
    """VGG16 features up to the end of slice ``slices``: convs with ReLU; between levels a stride-1 max-pool
    and a blur-pool ÷2 (the shift-tolerant variant), numbered as in the weights file."""
    layers, in_ch = [], 3
    for level, widths in enumerate(_WIDTHS[:slices]):
        if level:
            layers += [nn.MaxPool2d(2, stride=1), BlurPool(in_ch)]
        for width in widths:
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU()]
            in_ch = width
    return layers


class VGGTrunk(nn.Module):
    """Images in [0, 1] -> the ReLU outputs that end slices 1 … ``slices`` (relu1_2 … relu5_3)."""

    def __init__(self, slices: int = 5):
        super().__init__()
        if not 1 <= slices <= len(LAYERS):
            raise ValueError(f"slices {slices}: 1 to {len(LAYERS)}")
        self.scaling_layer = InputScaling()
        layers = _vgg_layers(slices)
        self.net = nn.Module()
        start = 0
        for k in range(slices):
            end = start + 2 * len(_WIDTHS[k]) + (2 if k else 0)
            self.net.add_module(f"slice{k + 1}", nn.Sequential(OrderedDict(
                (str(i), layers[i]) for i in range(start, end))))
            start = end
        self.slices = slices

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = ((2 * images - 1) - self.scaling_layer.shift) / self.scaling_layer.scale  # LPIPS: ImageNet mean, std
        features = []
        for k in range(self.slices):
            x = getattr(self.net, f"slice{k + 1}")(x)
            features.append(x)
        return features


def load_vgg_trunk(slices: int = 5, device="cpu") -> VGGTrunk:
    """The trunk from the wheel's file (weights only; the LPIPS heads and deeper slices are left out), frozen."""
    path = installed_package_file(VGG_PACKAGE, VGG_WEIGHTS)
    if path is None:
        raise PulseError(f"the perceptual loss needs {VGG_WEIGHTS.rsplit('/', 1)[-1]} from stlpips-pytorch: "
                         f'pip install "pulse[eval]" (or train with --perceptual-weight 0)')
    trunk = VGGTrunk(slices)
    wanted = ("scaling_layer.",) + tuple(f"net.slice{k + 1}." for k in range(slices))
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        trunk.load_state_dict({k: v for k, v in state.items() if k.startswith(wanted)}, strict=True)
    except RuntimeError as err:
        raise PulseError(f"{path}: not the expected VGG16 trunk ({str(err).splitlines()[0][:200]})")
    return trunk.eval().requires_grad_(False).to(device)


def parse_layers(spec: str) -> tuple[str, ...]:
    """'relu2_2,relu3_3' -> the layer names, in trunk order; unknown names raise ValueError."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in LAYERS]
    if unknown or not names:
        raise ValueError(f"{spec!r}: choose one or more of {', '.join(LAYERS)}")
    return tuple(sorted(set(names), key=LAYERS.index))


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively here (CUDA with bf16; CPUs with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class PerceptualLoss(nn.Module):
    """The distance of SR to HR in the trunk's chosen layers. Per layer, each pixel's feature vector is first
    unit-normalised across channels, as LPIPS does (these weights come from LPIPS, and their layers differ
    widely in scale); the distance is then the squared difference summed over channels (MSE; = 2 − 2·cosine
    similarity, so every layer counts alike), averaged over pixels and then over the layers: LPIPS with equal
    channel weights. HR features need no gradient. The frozen trunk runs channels-last and, where native, in
    bfloat16 (it is the costliest part of a GAN-stage step; the distance itself is float32)."""

    def __init__(self, layers: tuple[str, ...] = DEFAULT_LAYERS, device="cpu"):
        super().__init__()
        device = torch.device(device)
        self.indices = [LAYERS.index(name) for name in layers]
        self.trunk = load_vgg_trunk(max(self.indices) + 1, device).to(memory_format=torch.channels_last)
        self.bf16 = native_bf16(device)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.autocast(sr.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            with torch.no_grad():
                target = self.trunk(hr.contiguous(memory_format=torch.channels_last))
            features = self.trunk(sr.contiguous(memory_format=torch.channels_last))
        return sum(_unit(features[i]).sub(_unit(target[i])).square().sum(1).mean()
                   for i in self.indices) / len(self.indices)


def _unit(features: torch.Tensor) -> torch.Tensor:
    features = features.float()
    return features / (features.square().sum(1, keepdim=True).sqrt() + 1e-10)
