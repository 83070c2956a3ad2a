"""The shift-tolerant LPIPS network (ST-LPIPS, Ghildyal & Liu 2022) with its AlexNet trunk.

Rebuilt here with the module names of the ``stlpips-pytorch`` weights file, so that file loads strictly: the
package's own code imports IPython and torchsummary, which it does not declare.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 2, [1, 2, 1]^2 / 16 per channel (filter from the file)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("filt", torch.zeros(channels, 1, 3, 3))

    def forward(self, x):
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class InputScaling(nn.Module):
    """The trunk's input shift and scale (values from the file); shared with the perceptual loss's VGG16."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))


class _Head(nn.Module):
    """LPIPS's learned per-channel weights of one layer's squared feature differences (a 1x1 conv)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(OrderedDict([("1", nn.Conv2d(channels, 1, 1, bias=False))]))


class _AlexTrunk(nn.Module):
    """AlexNet features with stride-1 convs and blur-pooling; module names match the weights file."""

    def __init__(self):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=False)  # noqa: E731
        layers = [
            nn.Conv2d(3, 64, 11, padding=2), BlurPool(64), relu(),
            nn.MaxPool2d(3, stride=1), BlurPool(64), nn.Conv2d(64, 192, 5, padding=2), relu(),
            nn.MaxPool2d(3, stride=1), BlurPool(192), nn.Conv2d(192, 384, 3, padding=1), relu(),
            nn.Conv2d(384, 256, 3, padding=1), relu(),
            nn.Conv2d(256, 256, 3, padding=1), relu(),
        ]
        bounds = [0, 3, 7, 11, 13, 15]
        for k in range(5):
            self.add_module(f"slice{k + 1}", nn.Sequential(OrderedDict(
                (str(i), layers[i]) for i in range(bounds[k], bounds[k + 1]))))

    def forward(self, x):
        features = []
        for k in range(5):
            x = getattr(self, f"slice{k + 1}")(x)
            features.append(x)
        return features


class STLPIPSAlex(nn.Module):
    """Shift-tolerant LPIPS with the AlexNet trunk, as in stlpips-pytorch (version 0.1 input scaling)."""

    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self):
        super().__init__()
        self.scaling_layer = InputScaling()
        self.net = _AlexTrunk()
        for k, channels in enumerate(self.CHANNELS):
            self.add_module(f"lin{k}", _Head(channels))

    def scale(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the trunk's input range."""
        return ((2 * images - 1) - self.scaling_layer.shift) / self.scaling_layer.scale

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] twice -> (N,) distances."""
        total = 0
        for k, (fa, fb) in enumerate(zip(self.net(self.scale(a)), self.net(self.scale(b)))):
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}").model((fa - fb).pow(2)).mean((2, 3))
        return total[:, 0]
