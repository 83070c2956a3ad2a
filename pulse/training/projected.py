"""A projected discriminator (Projected GAN, Sauer et al. 2021) on dlib's face-recognition ResNet.

Why: on a few CPU cores a discriminator trained from scratch sees some ten thousand images and is slow to learn
what a face is, so for long it cannot tell G that eyes and mouths are wrong. A frozen network trained on faces
already responds to eyes, noses and mouths at several scales; small trainable heads judge its maps, so D knows
faces from its first step. dlib's ResNet is the face network that ships offline (face-recognition-models).

- The trunk's weights are frozen buffers, not parameters: the optimiser, ``requires_grad_`` and checkpoints
  leave them alone (they come from the wheel, not the run).
- Images are mapped to dlib's input (RGB 0..255, 150 px) and the maps of its first four stages (35, 17, 8 and
  4 px) each go to a head: a 1×1 channel mix, then 4×4 stride-2 convs down to 4×4 and a logit map. Heads are
  spectral-normalised (the paper's choice; its runs use no R1, so ``--r1-gamma`` defaults to 0 with this D).
- dlib's features were trained to ignore colour and lighting (same person, any photo), so a D that sees only
  them lets G drift in colour (a yellow cast over every sample within 2 kimg) and collapse to one kind of face.
  One more head judges the image itself at 64 px, with a minibatch-stddev channel (as StyleGAN's D) so that
  a lack of variety is visible to it: colour, layout and diversity, cheaply.
- The logit of an image is the sum over heads of each head's mean logit.

``HybridDiscriminator`` keeps the feature heads but puts a whole pixel discriminator (the DCGAN one, at full
resolution) beside them in place of the small image head, and weighs the feature heads' vote: the pixel D judges
colour, texture and variety as the shipped recipe's D did, the features judge eyes, noses and mouths.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ..faces.dlib_resnet import CHIP_SIZE, load_dlib_face_resnet
from ..models.stylegan1 import LRELU_SLOPE
from .discriminators import Discriminator, minibatch_stddev

HEAD_STAGES = 4  # of the trunk's five: the 2 px stage carries identity more than appearance
HEAD_WIDTHS = (64, 128, 256, 256)  # a head's widths after its channel mix, by how far it has gone down
IMAGE_HEAD_SIZE = 64  # the image head's view: colour, layout and variety, not fine detail


def _freeze_into_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter and buffer into a non-persistent buffer: moved by ``.to``, never trained or saved."""
    for sub in module.modules():
        tensors = {**dict(sub.named_parameters(recurse=False)), **dict(sub.named_buffers(recurse=False))}
        for name, tensor in tensors.items():
            delattr(sub, name)
            sub.register_buffer(name, tensor.detach().clone(), persistent=False)
    return module


class _MinibatchStddev(nn.Module):
    def forward(self, x):
        return minibatch_stddev(x)


def _head(channels: int, size: int, stddev: bool = False) -> nn.Sequential:
    """Judge a (channels, size, size) map: 1×1 mix, stride-2 4×4 convs to 4×4, then a 4×4 conv to logits
    (``stddev``: after a minibatch-stddev channel)."""
    width = HEAD_WIDTHS[0]
    layers: list[nn.Module] = [spectral_norm(nn.Conv2d(channels, width, 1)), nn.LeakyReLU(LRELU_SLOPE)]
    step = 0
    while size > 4:
        step += 1
        out = HEAD_WIDTHS[min(step, len(HEAD_WIDTHS) - 1)]
        layers += [spectral_norm(nn.Conv2d(width, out, 4, stride=2, padding=1)), nn.LeakyReLU(LRELU_SLOPE)]
        width, size = out, (size - 2) // 2 + 1
    if stddev:
        layers.append(_MinibatchStddev())
    layers.append(spectral_norm(nn.Conv2d(width + stddev, 1, 4, padding=1)))
    return nn.Sequential(*layers)


class ProjectedDiscriminator(nn.Module):
    """Image in [-1, 1] (B, 3, res, res) -> realness logit (B,). ``config`` is the shared ``DiscriminatorConfig``;
    its widths are not used (the trunk's maps set the heads' inputs). ``image_head=False``: the feature heads only."""

    def __init__(self, config, image_head: bool = True):
        super().__init__()
        self.config = config
        self.trunk = _freeze_into_buffers(load_dlib_face_resnet()).eval()
        with torch.no_grad():
            maps = self.trunk.features(torch.zeros(1, 3, CHIP_SIZE, CHIP_SIZE))[:HEAD_STAGES]
        self.heads = nn.ModuleList(_head(m.shape[1], m.shape[-1]) for m in maps)
        self.image_head = _head(3, IMAGE_HEAD_SIZE, stddev=True) if image_head else None

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()  # frozen: nothing in it may change with the mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        chips = F.interpolate((images + 1) * 127.5, size=(CHIP_SIZE, CHIP_SIZE), mode="bilinear",
                              align_corners=False)
        maps = self.trunk.features(chips)[:HEAD_STAGES]
        logits = sum(head(m).float().mean(dim=(1, 2, 3)) for head, m in zip(self.heads, maps))
        if self.image_head is not None:
            small = F.interpolate(images, size=(IMAGE_HEAD_SIZE, IMAGE_HEAD_SIZE), mode="area")
            logits = logits + self.image_head(small).float().mean(dim=(1, 2, 3))
        return logits


class HybridDiscriminator(nn.Module):
    """The pixel D (``Discriminator``, ``config.channels``) plus ``config.feature_weight`` × the dlib-feature
    heads. Image in [-1, 1] (B, 3, res, res) -> realness logit (B,)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.pixel = Discriminator(config)
        self.features = ProjectedDiscriminator(config, image_head=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pixel(images).float() + self.config.feature_weight * self.features(images)
