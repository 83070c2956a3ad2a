"""``FeedForwardUpsampler``: the feed-forward methods (srresnet, srgan) behind the same calls as the search's
``Upsampler``.

``pulse run``, ``restore``, ``eval`` and the API take either, so a user can switch method with one flag. One
pass per batch, no seeds and no samples: the network is deterministic, so asking for several samples is refused
rather than returning copies. The LR consistency of what is delivered is measured exactly as for the search
(the 8-bit output downscaled with pulse's operator against the input): the network does not promise it, so the
report says how close it came.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from .devices import select_device
from .errors import PulseError
from .models.srresnet import LoadedSRModel
from .search import SearchOptions
from .upsampling import BatchUpsampler, Made

BATCH = 64  # LR faces per forward pass: cheap at 16 px, and large batches use the cores best


@dataclass
class _Request:
    eps: float  # the threshold the report judges LR consistency by


class FeedForwardUpsampler(BatchUpsampler):
    """A loaded SR network (``pulse train-sr``): ``run``/``stream`` as ``Upsampler``'s, one output per input.
    ``method``: "srresnet" (the pixel-loss network) or "srgan" (the adversarially trained one)."""

    checks_face_size = False  # any LR size: the network is convolutional

    def __init__(self, model: str | os.PathLike | LoadedSRModel | None = None, scale: float = 8, device="auto",
                 batch_size: int = BATCH, method: str = "srresnet"):
        """``model``: a file, a registry name, or None for the registry's network of ``method`` and ``scale``."""
        from .weights.resolve import check_sr_method, open_sr_model

        self.device, self.method = select_device(device), method
        if isinstance(model, LoadedSRModel):
            check_sr_method(model, method, model.source)
            self.model = model.to(self.device)
        else:
            self.model = open_sr_model(model, scale, self.device, method=method)
        self.batch_size = batch_size

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def resolution(self) -> int:
        """The HR face size the network was trained to produce (``restore`` aligns faces at this size)."""
        return int(self.model.metadata.get("hr_size", 16 * self.scale))

    def _settings(self, scale: float, samples: int, options: dict) -> _Request:
        """What this network cannot do is a PulseError: another scale, several samples, search options."""
        if scale != self.scale:
            raise PulseError(f"{self.model.source}: enlarges x{self.scale} only, not x{scale:g}")
        if samples != 1:
            raise PulseError(f"samples {samples}: {self.method} is deterministic and gives one output per input; "
                             "several samples are a pulse (search) feature")
        given = sorted(k for k, v in options.items() if v is not None and k != "eps")
        if given:
            raise PulseError(f"{', '.join(given)}: search options; {self.method} does not search")
        return _Request(options.get("eps") or SearchOptions.eps)

    def _batch_rows(self, request: _Request) -> int:
        return self.batch_size

    def _make(self, lrs: torch.Tensor, seeds: list[int], samples: list[int], eps: tuple[float, ...], request: _Request,
              on_step: Callable[[int, int], None] | None) -> list[Made]:
        hr = self.model.super_resolve(lrs).cpu()
        if on_step:
            on_step(1, 1)
        return [Made(image) for image in hr]
