"""``FeedForwardUpsampler``: the SRGAN method behind the same calls as the search's ``Upsampler``.

``pulse run``, ``restore``, ``eval`` and the API take either, so a user can switch method with one flag. One
pass per batch, no seeds and no samples: the network is deterministic, so asking for several samples is refused
rather than returning copies. The LR consistency of what is delivered is measured exactly as for the search
(the 8-bit output downscaled with pulse's operator against the input): the network does not promise it, so the
report says how close it came.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Iterator, Sequence

import torch

from .api import ImageLike, Result, output_size, to_lr_tensor
from .devices import select_device
from .errors import PulseError
from .imageio import pil_to_tensor, psnr_from_mse, tensor_to_pil
from .models.srresnet import LoadedSRModel
from .resample import resize
from .search import SearchOptions

BATCH = 64  # LR faces per forward pass: cheap at 16 px, and large batches use the cores best


class FeedForwardUpsampler:
    """A loaded SR network (``pulse train-sr``): ``run``/``stream`` as ``Upsampler``'s, one output per input."""

    method = "srgan"

    def __init__(self, model: str | os.PathLike | LoadedSRModel | None = None, scale: float = 8, device="auto",
                 batch_size: int = BATCH):
        """``model``: a file, a registry name, or None for the registry's model of ``scale``."""
        self.device = select_device(device)
        if isinstance(model, LoadedSRModel):
            self.model = model.to(self.device)
        else:
            from .weights.resolve import open_sr_model

            self.model = open_sr_model(model, scale, self.device)
        self.batch_size = batch_size

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def resolution(self) -> int:
        """The HR face size the network was trained to produce (``restore`` aligns faces at this size)."""
        return int(self.model.metadata.get("hr_size", 16 * self.scale))

    def run(self, images: Sequence[ImageLike], scale: float = 8, samples: int = 1, seed: int = 0,
            eps: float | Sequence[float] | None = None, on_step: Callable[[int, int], None] | None = None,
            **options) -> list[list[Result]]:
        """Super-resolve each image once; returns results[image][0]. The first bad input raises its error."""
        lrs = []
        for i, img in enumerate(images):
            lrs.append(to_lr_tensor(img, str(img) if isinstance(img, (str, os.PathLike)) else f"image {i}"))
        results: list = [None] * len(lrs)
        for i, found in self.stream(lrs, scale, samples, seed, eps, on_step, **options):
            if isinstance(found, PulseError):
                raise found
            results[i] = found
        return results

    def stream(self, images: Iterable[ImageLike], scale: float = 8, samples: int = 1, seed: int = 0,
               eps: float | Sequence[float] | None = None, on_step: Callable[[int, int], None] | None = None,
               **options) -> Iterator[tuple[int, list[Result] | PulseError]]:
        """As ``Upsampler.stream``: (index, [result]) per input as its batch finishes, (index, error) for an
        input that cannot be used. ``seed`` is recorded, not used; search keywords (steps, loss, ...) are refused."""
        self.check_request(scale, samples, options)
        eps_list = [eps] if eps is None or isinstance(eps, (int, float)) else list(eps)
        pending: dict[tuple, list[tuple[int, torch.Tensor, float]]] = {}  # by LR size: (index, LR, eps)
        count = 0
        for i, img in enumerate(images):
            count = i + 1
            name = str(img) if isinstance(img, (str, os.PathLike)) else f"image {i}"
            try:
                lr = to_lr_tensor(img, name)
                output_size(lr.shape[-1], scale, name)
                if len(eps_list) > 1 and i >= len(eps_list):
                    raise PulseError(f"eps: {len(eps_list)} values for more images")
            except PulseError as err:
                yield i, err
                continue
            own_eps = eps_list[i if len(eps_list) > 1 else 0]
            rows = pending.setdefault(tuple(lr.shape[-2:]), [])
            rows.append((i, lr, SearchOptions.eps if own_eps is None else own_eps))
            if len(rows) >= self.batch_size:
                yield from self._run_rows(rows, seed, on_step)
        if len(eps_list) > 1 and count != len(eps_list):
            raise PulseError(f"eps: {len(eps_list)} values for {count} images")
        for rows in pending.values():
            if rows:
                yield from self._run_rows(rows, seed, on_step)

    def check_request(self, scale: float, samples: int, options: dict) -> None:
        """A PulseError for what this network cannot do: another scale, several samples, search options."""
        if scale != self.scale:
            raise PulseError(f"{self.model.source}: enlarges x{self.scale} only, not x{scale:g}")
        if samples != 1:
            raise PulseError(f"samples {samples}: {self.method} is deterministic and gives one output per input; "
                             "several samples are a pulse (search) feature")
        given = sorted(k for k, v in options.items() if v is not None)
        if given:
            raise PulseError(f"{', '.join(given)}: search options; {self.method} does not search")

    def _run_rows(self, rows: list, seed: int, on_step) -> Iterator[tuple[int, list[Result]]]:
        started = time.perf_counter()
        hr = self.model.super_resolve(torch.stack([lr for _, lr, _ in rows])).cpu()
        if on_step:
            on_step(1, 1)
        seconds = (time.perf_counter() - started) / len(rows)
        for (i, lr, eps), image in zip(rows, hr):
            yield i, [_deliver(image, lr, eps, seed, seconds)]
        rows.clear()


def _deliver(image: torch.Tensor, lr: torch.Tensor, eps: float, seed: int, seconds: float) -> Result:
    """Quantise to 8 bits and measure the LR consistency of what the user receives."""
    delivered = tensor_to_pil(image)
    mse = float((resize(pil_to_tensor(delivered).unsqueeze(0), tuple(lr.shape[-2:]))[0] - lr).pow(2).mean())
    return Result(image=delivered, lr_mse=mse, lr_psnr=psnr_from_mse(mse), success=mse <= eps, seed=seed,
                  sample=0, steps=0, best_step=0, seconds=seconds)
