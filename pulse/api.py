"""What users call: ``Upsampler`` keeps a generator loaded and batches many faces; ``upsample`` is one call;
``open_upsampler`` gives the search or the feed-forward method behind the same calls.

Inputs are validated here (one ``PulseError`` line naming the input), turned into LR tensors, grouped by
size into batches of (image, sample) rows for the search, and the results are delivered at input x scale,
with their LR consistency measured again on the delivered 8-bit image: that number is the promise.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .devices import select_device
from .errors import PulseError
from .imageio import load_image, pil_to_tensor, psnr_from_mse, tensor_to_pil, to_rgb
from .memory import CPU_BATCH, cuda_free_bytes, cuda_peak_bytes, fit_batch_size
from .models.generator_file import LoadedGenerator
from .resample import resize
from .search import SearchOptions, options_for, search

ImageLike = Image.Image | np.ndarray | torch.Tensor | str | os.PathLike


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


def to_lr_tensor(img: ImageLike, name: str = "input", resolution: int | None = None) -> torch.Tensor:
    """Any supported input -> (3, h, w) float32 in [0, 1]; raises PulseError naming ``name``.

    ``resolution``: also check the face fits a generator of this size (``check_lr_size``), for a file from its
    header, before decoding it."""
    if isinstance(img, (str, os.PathLike)):
        check = None if resolution is None else partial(check_lr_size, resolution=resolution, name=name)
        lr = pil_to_tensor(load_image(img, check_size=check))
    else:
        lr = _to_tensor(img, name)
    if resolution is not None:
        check_lr_size(lr.shape[-1], lr.shape[-2], resolution, name)
    return lr


def _to_tensor(img, name: str) -> torch.Tensor:
    if isinstance(img, Image.Image):
        return pil_to_tensor(to_rgb(img, name))
    if isinstance(img, np.ndarray):
        if img.dtype == np.uint8:
            arr = img
        elif img.dtype == np.uint16:
            arr = (img.astype(np.float64) / 257 + 0.5).astype(np.uint8)
        else:
            raise PulseError(f"{name}: numpy image must be uint8 or uint16 (H, W[, C]), got {img.dtype}")
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4)):
            mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[1 if arr.ndim == 2 else arr.shape[2]]
            return pil_to_tensor(to_rgb(Image.fromarray(arr.squeeze(-1) if mode == "L" and arr.ndim == 3 else arr, mode), name))
        raise PulseError(f"{name}: numpy image must be (H, W) or (H, W, 1|2|3|4), got shape {arr.shape}")
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise PulseError(f"{name}: tensor must be (3, H, W) or (1, H, W), got shape {tuple(img.shape)}")
        if t.dtype == torch.uint8:
            t = t.float() / 255
        elif t.is_floating_point():
            t = t.float()
            if not torch.isfinite(t).all():
                raise PulseError(f"{name}: tensor contains NaN or infinite values")
            if t.min() < 0 or t.max() > 1:
                raise PulseError(f"{name}: float tensor values must lie in [0, 1], got [{t.min():.3g}, {t.max():.3g}]")
        else:
            raise PulseError(f"{name}: tensor dtype must be float (values in [0, 1]) or uint8, got {t.dtype}")
        return t.expand(3, -1, -1).contiguous()
    raise PulseError(f"{name}: unsupported input type {type(img).__name__} (give a path, PIL image, array or tensor)")


def output_size(lr_size: int, scale: float, name: str = "input") -> int:
    """input size x scale, which must be a positive whole number of pixels."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise PulseError(f"{name}: scale must be > 0 and finite, got {scale!r}")
    size = lr_size * scale
    if abs(size - round(size)) > 1e-6 or round(size) < 1:
        raise PulseError(f"{name}: {lr_size} px x scale {scale} = {size:g} px is not a whole number of pixels")
    return int(round(size))


def check_lr_size(width: int, height: int, resolution: int, name: str = "input") -> None:
    """The search needs a square face no larger than the generator's output."""
    if width != height:
        raise PulseError(f"{name}: {width}x{height} is not square; crop and align faces first with `pulse align`")
    if width > resolution:
        raise PulseError(f"{name}: {width}x{height} is larger than the generator's {resolution} px output; "
                         "nothing to upsample")


COMPILE_NOTE = "note: the first batch compiles the generator (a minute or so; its kernels are cached for later runs)"


class Upsampler:
    """A loaded generator plus the search: ``run`` many faces at once, batched over faces x samples."""

    method = "pulse"

    def __init__(self, generator: str | os.PathLike | LoadedGenerator | None = None, device="auto",
                 batch_size: int | str = "auto", compile: bool = False):
        """``batch_size``: rows (faces x samples) searched at once, or "auto": 8 on a CPU, and on a GPU the
        most that fit in its free memory, measured on the first ``run`` (``fit_batch_size``).
        ``compile``: torch.compile the generator (``LoadedGenerator.compile``): faster steps after a compile
        on the first batch; worth it for many faces, not for a few."""
        if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size >= 1):
            raise PulseError(f"batch size must be a whole number >= 1 or 'auto', got {batch_size!r}")
        self.device = select_device(device)
        if isinstance(generator, LoadedGenerator):
            self.model = generator.to(self.device)
        else:
            from .weights.resolve import open_generator

            self.model = open_generator(generator, self.device)
        if compile:
            self.model.compile()
        self.batch_size: int | None = None if batch_size == "auto" else batch_size  # as asked; None: auto
        self._rows: dict[tuple, int] = {}  # rows per batch in use, by the options that set a row's memory
        self._compiled_rows = 0  # the widest batch the compiled network has run

    @property
    def resolution(self) -> int:
        return self.model.generator.resolution

    def fit_batch_size(self, **options) -> int:
        """The batch size in use for these search options. With "auto" it is chosen on first use of a setting
        that changes a row's memory (precision, trainable noise maps): 8 on a CPU, on a GPU the most rows that
        fit. Either way it may since have been halved by running out of GPU memory."""
        return self._rows[self._fit(self.search_options(**options))]

    def _fit(self, opts: SearchOptions) -> tuple:
        """Choose the batch size for ``opts``' memory setting unless it is known; returns that setting's key."""
        key = _memory_key(opts)
        if key not in self._rows:
            if self.batch_size is not None:
                self._rows[key] = self.batch_size
            elif self.device.type != "cuda":
                self._rows[key] = CPU_BATCH
            else:
                opts = replace(opts, steps=1, frame_every=0, early_stop=False)
                lr_size = max(1, self.resolution // 8)
                eager = replace(self.model, compiled=None)  # probes compile nothing (OOM halving covers the rest)
                run_rows = lambda n: search(eager, torch.zeros(n, 3, lr_size, lr_size), list(range(n)), opts)  # noqa: E731
                try:
                    self._rows[key] = fit_batch_size(run_rows, partial(cuda_peak_bytes, device=self.device),
                                                     partial(cuda_free_bytes, self.device))
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    self._rows[key] = 1
        return key

    def search_options(self, **given) -> SearchOptions:
        """The search settings these keywords give with this generator (its recommended ones where not given)."""
        try:
            return options_for(self.model, **given)
        except (TypeError, ValueError) as err:
            raise PulseError(f"search options: {err}") from None

    def run(self, images: Sequence[ImageLike], scale: float = 8, samples: int = 1, seed: int = 0,
            eps: float | Sequence[float] | None = None, on_step: Callable[[int, int], None] | None = None,
            **options) -> list[list[Result]]:
        """Super-resolve each image ``samples`` times; returns results[image][sample].

        Sample k of every image starts from seed ``seed + k``. ``eps`` is one value or one per image;
        other keywords are ``SearchOptions`` fields (steps, loss, learning_rate, noise, early_stop, ...); those
        not given come from the generator file's recommended settings, else the reference's. The first input
        that cannot be searched raises its ``PulseError`` before any search runs.
        """
        lrs = []
        for i, img in enumerate(images):
            name = str(img) if isinstance(img, (str, os.PathLike)) else f"image {i}"
            lrs.append(to_lr_tensor(img, name, self.resolution))
            output_size(lrs[-1].shape[-1], scale, name)
        results: list[list[Result] | None] = [None] * len(lrs)
        for i, found in self.stream(lrs, scale, samples, seed, eps, on_step, **options):
            results[i] = found
        return results

    def stream(self, images: Iterable[ImageLike], scale: float = 8, samples: int = 1, seed: int = 0,
               eps: float | Sequence[float] | None = None, on_step: Callable[[int, int], None] | None = None,
               **options) -> Iterator[tuple[int, list[Result] | PulseError]]:
        """``run``, one input at a time: yields (index, its results by sample) as soon as the batch holding its
        last sample finishes, so a caller can save and report each face while the others are searched; and for
        an input that cannot be searched (unreadable, not square, too large, bad size for ``scale``), (index, its
        ``PulseError``), and the others go on. ``images`` is read as batches fill, so a long iterable (a
        generator of decoded faces) is never all in memory. Files are checked from their header before they are
        decoded.
        """
        if samples < 1:
            raise PulseError(f"samples must be >= 1, got {samples}")
        opts = self.search_options(**options, **({"eps": eps} if isinstance(eps, (int, float)) else {}))
        eps_list = None if eps is None or isinstance(eps, (int, float)) else list(eps)
        key = self._fit(opts)

        lrs: dict[int, torch.Tensor] = {}  # inputs with rows still to search or deliver
        out_sizes: dict[int, int] = {}  # input size x scale, as delivered
        eps_of: dict[int, float] = {}
        pending: dict[int, list[tuple[int, int]]] = {}  # rows (input, sample) not yet searched, by LR size
        done: dict[int, list[Result | None]] = {}
        sizes_seen: set[int] = set()  # output sizes warned about (once each) if past native
        count = 0
        for i, img in enumerate(images):
            count = i + 1
            name = str(img) if isinstance(img, (str, os.PathLike)) else f"image {i}"
            try:
                lr = to_lr_tensor(img, name, self.resolution)
                size = output_size(lr.shape[-1], scale, name)
                if eps_list is not None and i >= len(eps_list):
                    raise PulseError(f"eps: {len(eps_list)} values for more images")
            except PulseError as err:
                yield i, err
                continue
            if size not in sizes_seen:
                sizes_seen.add(size)
                self._warn_past_native(size)
            lrs[i], out_sizes[i], done[i] = lr, size, [None] * samples
            eps_of[i] = opts.eps if eps_list is None else eps_list[i]
            rows = pending.setdefault(lr.shape[-1], [])
            rows.extend((i, k) for k in range(samples))
            while len(rows) >= self._rows[key]:  # a full batch: search it now
                yield from self._search_rows(rows, key, lrs, out_sizes, eps_of, done, opts, seed, on_step)
        if eps_list is not None and count != len(eps_list):
            raise PulseError(f"eps: {len(eps_list)} values for {count} images")
        for rows in pending.values():
            while rows:
                yield from self._search_rows(rows, key, lrs, out_sizes, eps_of, done, opts, seed, on_step)

    def _search_rows(self, rows, key, lrs, out_sizes, eps_of, done, opts, seed, on_step):
        """Search the first batch of ``rows`` (taking them off), deliver, and yield each input it completes."""
        chunk = rows[: self._rows[key]]  # the batch size may have dropped (out of GPU memory)
        del rows[: len(chunk)]
        filled = chunk + chunk[-1:] * (self._rows_to_run(key, len(chunk)) - len(chunk))
        t0 = time.perf_counter()
        found = self._search(torch.stack([lrs[i] for i, _ in filled]), [seed + k for _, k in filled],
                             replace(opts, eps=tuple(eps_of[i] for i, _ in filled)), on_step)[: len(chunk)]
        seconds = (time.perf_counter() - t0) / len(chunk)
        for (i, k), res in zip(chunk, found):
            done[i][k] = self._deliver(res, lrs[i], out_sizes[i], eps_of[i], k, seconds, opts.degradation)
            if all(r is not None for r in done[i]):
                del lrs[i], out_sizes[i], eps_of[i]
                yield i, done.pop(i)

    def _rows_to_run(self, key, rows: int) -> int:
        """Compiled, a batch smaller than one already run is filled up to it with copies of its last row: a
        new batch size would compile anew (a minute on CPU) and then run a slower dynamic-shape graph."""
        if self.model.compiled is None:
            return rows
        rows = max(rows, min(self._compiled_rows, self._rows[key]))
        self._compiled_rows = max(self._compiled_rows, rows)
        return rows

    def _search(self, lr, seeds, opts, on_step):
        """One batch of the search; out of GPU memory, it halves the batch (for good) and carries on."""
        try:
            return search(self.model, lr, seeds, opts, progress=on_step)
        except torch._dynamo.exc.BackendCompilerFailed as err:  # e.g. no C++ compiler for CPU kernels
            reason = str(err).strip().splitlines()[0]
            raise PulseError(f"torch.compile failed on {self.device}: {reason}; run without --compile") from None
        except torch.cuda.OutOfMemoryError:
            if len(seeds) == 1:
                raise PulseError(f"out of GPU memory for a single face on {self.device}; use --device cpu") from None
            torch.cuda.empty_cache()
            half = len(seeds) // 2
            key = _memory_key(opts)
            self._rows[key] = min(self._rows[key], half)
            warnings.warn(f"CUDA out of memory with {len(seeds)} faces at once: batch size lowered to {half}")
            return (self._search(lr[:half], seeds[:half], replace(opts, eps=opts.eps[:half]), on_step)
                    + self._search(lr[half:], seeds[half:], replace(opts, eps=opts.eps[half:]), on_step))

    def _deliver(self, res, lr: torch.Tensor, out: int, eps: float, sample: int, seconds: float,
                 degradation: str) -> Result:
        """Resize to the output size, quantise to 8 bits, and measure what the user actually receives, downscaled
        by the operator the search explained the input with."""
        image = tensor_to_pil(resize(res.image.unsqueeze(0), out)[0].clamp(0, 1))
        lr_again = resize(pil_to_tensor(image).unsqueeze(0), lr.shape[-1], degradation)[0]
        mse = float((lr_again - lr).pow(2).mean())
        return Result(image=image, lr_mse=mse, lr_psnr=psnr_from_mse(mse), success=mse <= eps, seed=res.seed,
                      sample=sample, steps=res.steps, best_step=res.best_step, seconds=seconds,
                      frames=[tensor_to_pil(f) for f in res.frames])

    def _warn_past_native(self, size: int) -> None:
        if size > self.resolution:
            warnings.warn(f"output size {size} px is larger than the generator's {self.resolution} px: "
                          "the result is upscaled past native resolution and will look soft")


def _memory_key(opts: SearchOptions) -> tuple:
    """The search options that change the memory a row needs (the activations kept for the backward pass)."""
    return opts.precision, opts.noise, opts.trainable_noise_layers


METHODS = ("pulse", "srgan")  # the search, and the feed-forward network (``pulse.feedforward``)


def open_upsampler(method: str = "pulse", generator=None, device="auto", scale: float = 8,
                   batch_size: int | str = "auto", compile: bool = False):
    """The upsampler of ``method``: ``Upsampler`` (the search) or ``FeedForwardUpsampler`` (srgan). Both have
    ``run``, ``stream``, ``resolution`` and ``device``. ``generator`` names the method's network (for srgan an SR
    model file or registry name; default the registry's model for ``scale``)."""
    if method == "pulse":
        return Upsampler(generator=generator, device=device, batch_size=batch_size, compile=compile)
    if method == "srgan":
        from .feedforward import BATCH, FeedForwardUpsampler

        if compile:
            raise PulseError("compile: a search option; srgan does not search")
        return FeedForwardUpsampler(generator, scale, device, BATCH if batch_size == "auto" else batch_size)
    raise PulseError(f"method {method!r}: choose from {', '.join(METHODS)}")


@lru_cache(maxsize=2)
def _cached_upsampler(method, generator, device, scale):
    return open_upsampler(method, generator, device, scale)


def upsample(img: ImageLike, scale: float = 8, samples: int = 1, seed: int = 0, generator=None, device="auto",
             method: str = "pulse", **options) -> Image.Image | list[Image.Image]:
    """Super-resolve one face. Returns a PIL image, or a list of ``samples`` images when samples > 1.

    ``method``: "pulse" (the search) or "srgan" (one feed-forward pass; one sample, no search keywords).
    The network stays loaded between calls with the same method, ``generator`` and ``device``.
    Keywords: eps, steps, loss, learning_rate, schedule, noise, early_stop (see ``SearchOptions``).
    """
    upsampler = _cached_upsampler(method, None if generator is None else str(generator), str(device),
                                  scale if method != "pulse" else None)
    images = [r.image for r in upsampler.run([img], scale=scale, samples=samples, seed=seed, **options)[0]]
    return images[0] if samples == 1 else images
