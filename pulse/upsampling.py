"""What every method shares behind ``run`` and ``stream``: inputs checked and grouped into batches of
(input, sample) rows, and results delivered as 8-bit images whose LR consistency is measured again on what the
user receives — that number is the promise. A method (the search, a feed-forward network) only turns a batch of
LR faces into HR faces (``BatchUpsampler._make``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch
from PIL import Image

from .errors import PulseError
from .imageio import pil_to_tensor, psnr_from_mse, tensor_to_pil
from .inputs import ImageLike, input_name, output_size, to_lr_tensor
from .resample import resize


@dataclass
class Result:
    """One super-resolved sample of one input."""

    image: Image.Image  # input size x scale
    lr_mse: float  # MSE between the delivered image, downscaled, and the input
    lr_psnr: float
    success: bool  # lr_mse <= eps
    seed: int
    sample: int
    steps: int
    best_step: int
    seconds: float
    frames: list[Image.Image] = field(default_factory=list)  # intermediate steps, generator resolution


@dataclass
class Made:
    """What a method made for one row: the face in [0, 1] at its own resolution, and how."""

    image: torch.Tensor
    steps: int = 0
    best_step: int = 0
    frames: list[torch.Tensor] = field(default_factory=list)


@dataclass
class _Input:
    lr: torch.Tensor
    out_size: int
    eps: float
    results: list


class BatchUpsampler:
    """The calls users make (``run``, ``stream``, ``check_request``) over a method's ``_make``.

    A method sets ``method``, ``device``, ``resolution`` and implements ``_settings`` (what a request means for it,
    or a ``PulseError`` for what it cannot do), ``_batch_rows`` and ``_make``."""

    method: str
    device: torch.device
    checks_face_size = True  # inputs must be square and no larger than ``resolution`` (the search's limits)

    @property
    def resolution(self) -> int:
        raise NotImplementedError

    def _settings(self, scale: float, samples: int, options: dict):
        """The method's settings for a request (an object with ``eps``, the default threshold); raises PulseError."""
        raise NotImplementedError

    def _batch_rows(self, settings) -> int:
        raise NotImplementedError

    def _make(self, lrs: torch.Tensor, seeds: list[int], samples: list[int], eps: tuple[float, ...], settings,
              on_step: Callable[[int, int], None] | None) -> list[Made]:
        """One batch: an image per row of ``lrs``, each with its seed and its sample number (0: an input's first)."""
        raise NotImplementedError

    def _lr_operator(self, settings) -> str:
        """The downscale the delivered image is checked with: the one the method explains its input by."""
        return "bicubic"

    def check_request(self, scale: float, samples: int, options: dict) -> None:
        """One PulseError line for a request this method cannot serve, before any input is read."""
        self._settings(scale, samples, options)

    def run(self, images: Sequence[ImageLike], scale: float = 8, samples: int = 1, seed: int = 0,
            eps: float | Sequence[float] | None = None, on_step: Callable[[int, int], None] | None = None,
            **options) -> list[list[Result]]:
        """Super-resolve each image ``samples`` times; returns results[image][sample].

        Images: paths, PIL images, numpy arrays (H, W[, C]) in RGB(A) order (``inputs.as_rgb_array`` turns
        OpenCV's BGR round), or float tensors (C, H, W) in [0, 1]. Sample k of every image starts from seed
        ``seed + k``. ``eps`` is one value or one per image; other keywords are the method's options (for the
        search, ``SearchOptions`` fields; not given: the generator's recommended settings). The first input that
        cannot be used raises its ``PulseError`` before any work runs.
        """
        lrs = []
        for i, img in enumerate(images):
            lrs.append(self._read(img, input_name(img, i), scale))
        results: list[list[Result] | None] = [None] * len(lrs)
        for i, found in self.stream(lrs, scale, samples, seed, eps, on_step, **options):
            if isinstance(found, PulseError):
                raise found
            results[i] = found
        return results

    def stream(self, images: Iterable[ImageLike], scale: float = 8, samples: int = 1, seed: int = 0,
               eps: float | Sequence[float] | None = None, on_step: Callable[[int, int], None] | None = None,
               **options) -> Iterator[tuple[int, list[Result] | PulseError]]:
        """``run``, one input at a time: yields (index, its results by sample) as soon as the batch holding its
        last sample finishes, so a caller can save and report each face while the others are worked on; and for
        an input that cannot be used (unreadable, wrong shape, bad size for ``scale``), (index, its
        ``PulseError``), and the others go on. ``images`` is read as batches fill, so a long iterable is never all
        in memory. Files are checked from their header before they are decoded.
        """
        if samples < 1:
            raise PulseError(f"samples must be >= 1, got {samples}")
        settings = self._settings(scale, samples, {**options, **({"eps": eps} if _one_value(eps) else {})})
        eps_list = None if eps is None or _one_value(eps) else list(eps)
        inputs: dict[int, _Input] = {}  # inputs with rows still to make or deliver
        pending: dict[tuple, list[tuple[int, int]]] = {}  # rows (input, sample) not yet made, by LR size
        sizes_seen: set[int] = set()
        count = 0
        for i, img in enumerate(images):
            count = i + 1
            name = input_name(img, i)
            try:
                lr = self._read(img, name, scale)
                if eps_list is not None and i >= len(eps_list):
                    raise PulseError(f"eps: {len(eps_list)} values for more images")
            except PulseError as err:
                yield i, err
                continue
            size = output_size(lr.shape[-1], scale, name)
            if size not in sizes_seen:
                sizes_seen.add(size)
                self._warn_past_native(size)
            inputs[i] = _Input(lr, size, settings.eps if eps_list is None else eps_list[i], [None] * samples)
            rows = pending.setdefault(tuple(lr.shape[-2:]), [])
            rows.extend((i, k) for k in range(samples))
            while len(rows) >= self._batch_rows(settings):  # a full batch: make it now
                yield from self._run_batch(rows, inputs, settings, seed, on_step)
        if eps_list is not None and count != len(eps_list):
            raise PulseError(f"eps: {len(eps_list)} values for {count} images")
        for rows in pending.values():
            while rows:
                yield from self._run_batch(rows, inputs, settings, seed, on_step)

    def _read(self, img: ImageLike, name: str, scale: float) -> torch.Tensor:
        lr = to_lr_tensor(img, name, self.resolution if self.checks_face_size else None)
        output_size(lr.shape[-1], scale, name)
        return lr

    def _run_batch(self, rows, inputs: dict[int, _Input], settings, seed: int, on_step):
        """Make the first batch of ``rows`` (taking them off), deliver, and yield each input it completes."""
        chunk = rows[: self._batch_rows(settings)]  # the batch size may have dropped (out of GPU memory)
        del rows[: len(chunk)]
        started = time.perf_counter()
        made = self._make(torch.stack([inputs[i].lr for i, _ in chunk]), [seed + k for _, k in chunk],
                          [k for _, k in chunk], tuple(inputs[i].eps for i, _ in chunk), settings, on_step)
        seconds = (time.perf_counter() - started) / len(chunk)
        operator = self._lr_operator(settings)
        for (i, k), one in zip(chunk, made):
            entry = inputs[i]
            entry.results[k] = _deliver(one, entry, k, seed + k, seconds, operator)
            if all(r is not None for r in entry.results):
                del inputs[i]
                yield i, entry.results

    def _warn_past_native(self, size: int) -> None:
        if self.checks_face_size and size > self.resolution:
            warnings.warn(f"output size {size} px is larger than the generator's {self.resolution} px: "
                          "the result is upscaled past native resolution and will look soft")


def _one_value(eps) -> bool:
    return isinstance(eps, (int, float))


def _deliver(made: Made, entry: _Input, sample: int, seed: int, seconds: float, operator: str) -> Result:
    """Resize to the output size, quantise to 8 bits, and measure what the user actually receives, downscaled by
    ``operator``."""
    image = made.image if made.image.shape[-1] == entry.out_size else resize(made.image[None], entry.out_size)[0]
    delivered = tensor_to_pil(image.clamp(0, 1))
    again = resize(pil_to_tensor(delivered).unsqueeze(0), tuple(entry.lr.shape[-2:]), operator)[0]
    mse = float((again - entry.lr).pow(2).mean())
    return Result(image=delivered, lr_mse=mse, lr_psnr=psnr_from_mse(mse), success=mse <= entry.eps, seed=seed,
                  sample=sample, steps=made.steps, best_step=made.best_step, seconds=seconds,
                  frames=[tensor_to_pil(f) for f in made.frames])
