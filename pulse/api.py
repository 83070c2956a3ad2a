"""What users call: ``Upsampler`` keeps a generator loaded and batches many faces; ``upsample`` is one call;
``open_upsampler`` gives the search or the feed-forward method behind the same calls (``upsampling``).

The search method: rows of one batch are independent problems (``search``), sized to the device's memory.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from .devices import select_device
from .errors import PulseError
from .inputs import ImageLike, as_rgb_array
from .memory import CPU_BATCH, cuda_free_bytes, cuda_peak_bytes, fit_batch_size
from .models.encoder import LoadedEncoder
from .models.generator_file import LoadedGenerator
from .search import SearchOptions, search
from .upsampling import BatchUpsampler, Made
from .weights.download import sha256_file

COMPILE_NOTE = "note: the first batch compiles the generator (a minute or so; its kernels are cached for later runs)"


class Upsampler(BatchUpsampler):
    """A loaded generator plus the search: ``run`` many faces at once, batched over faces x samples."""

    method = "pulse"

    def __init__(self, generator: str | os.PathLike | LoadedGenerator | None = None, device="auto",
                 batch_size: int | str = "auto", compile: bool = False,
                 encoder: str | os.PathLike | LoadedEncoder | None = None):
        """``batch_size``: rows (faces x samples) searched at once, or "auto": 8 on a CPU, and on a GPU the
        most that fit in its free memory, measured on the first ``run`` (``fit_batch_size``).
        ``compile``: torch.compile the generator (``LoadedGenerator.compile``): faster steps after a compile
        on the first batch; worth it for many faces, not for a few.
        ``encoder``: the latent encoder searches start from (``init="encoder"``): a file, a registry name or a
        loaded one; None: the installed registry encoder made for this generator and the run's scale, if any."""
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
        self._encoder_spec = encoder
        self._encoders: dict[float, LoadedEncoder | None] = {}  # by scale, opened on first use

    @property
    def resolution(self) -> int:
        return self.model.generator.resolution

    def fit_batch_size(self, scale: float = 8, **options) -> int:
        """The batch size in use for these search options. With "auto" it is chosen on first use of a setting
        that changes a row's memory (precision, trainable noise maps): 8 on a CPU, on a GPU the most rows that
        fit. Either way it may since have been halved by running out of GPU memory."""
        return self._rows[self._fit(self.search_options(scale, **options))]

    def _fit(self, opts: SearchOptions) -> tuple:
        """Choose the batch size for ``opts``' memory setting unless it is known; returns that setting's key."""
        key = _memory_key(opts)
        if key not in self._rows:
            if self.batch_size is not None:
                self._rows[key] = self.batch_size
            elif self.device.type != "cuda":
                self._rows[key] = CPU_BATCH
            else:
                opts = replace(opts, steps=1, frame_every=0, early_stop=False, init="random")
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

    @cached_property
    def generator_sha256(self) -> str:
        """The generator file's sha256 ("" for a network that is not a file): what encoders and reports name."""
        source = Path(self.model.source)
        return sha256_file(source) if source.is_file() else ""

    def encoder_for(self, scale: float) -> LoadedEncoder | None:
        """The encoder searches at ``scale`` start from: the one given to the upsampler (refused in one line if it
        was made for another generator or scale), else an installed one made for this generator and scale."""
        if scale not in self._encoders:
            spec = self._encoder_spec
            if isinstance(spec, LoadedEncoder):
                spec.check_generator(self.generator_sha256, Path(self.model.source).name)
                if spec.scale != scale:
                    raise PulseError(f"{spec.source}: an encoder for x{spec.scale}, not x{scale:g}")
                self._encoders[scale] = spec.to(self.device)
            else:
                from .weights.resolve import open_encoder

                self._encoders[scale] = open_encoder(spec, self.generator_sha256, Path(self.model.source).name, scale,
                                                     self.device)
        return self._encoders[scale]

    def search_options(self, scale: float = 8, **given) -> SearchOptions:
        """The search settings these keywords give with this generator at ``scale``: where not given, those of
        its encoder for the scale (``init`` "encoder" when there is one, else "random"), then the generator's
        recommended ones, then PULSE's."""
        init = given.get("init")
        encoder = None if init == "random" else self.encoder_for(scale)
        if init == "encoder" and encoder is None:
            raise PulseError(f"init encoder: no encoder for {Path(self.model.source).name} at x{scale:g} is installed; "
                             "train one with `pulse train-encoder` and pass it with --encoder FILE")
        recommended = {**self.model.metadata.get("search_defaults", {}),
                       **(encoder.search_defaults if encoder is not None else {}),
                       "init": "random" if encoder is None else "encoder"}
        try:
            return SearchOptions(**{**recommended, **given})
        except (TypeError, ValueError) as err:
            raise PulseError(f"search options: {err}") from None

    def _settings(self, scale: float, samples: int, options: dict) -> _SearchRequest:
        opts = self.search_options(scale, **options)
        self._fit(opts)
        return _SearchRequest(opts, self.encoder_for(scale) if opts.init == "encoder" else None)

    def _batch_rows(self, request: _SearchRequest) -> int:
        return self._rows[_memory_key(request.options)]

    def _lr_operator(self, request: _SearchRequest) -> str:
        return request.options.degradation

    def _make(self, lrs: torch.Tensor, seeds: list[int], samples: list[int], eps: tuple[float, ...],
              request: _SearchRequest, on_step: Callable[[int, int], None] | None) -> list[Made]:
        opts = request.options
        n = len(seeds)
        fill = self._rows_to_run(_memory_key(opts), n) - n
        lrs = torch.cat([lrs, lrs[-1:].expand(fill, -1, -1, -1)]) if fill else lrs
        seeds, samples, eps = seeds + seeds[-1:] * fill, samples + samples[-1:] * fill, eps + eps[-1:] * fill
        start = None if request.encoder is None else request.encoder.encode(lrs)
        found = self._search(lrs, seeds, samples, replace(opts, eps=eps), on_step, start)[:n]
        return [Made(r.image, r.steps, r.best_step, r.frames) for r in found]

    def _rows_to_run(self, key, rows: int) -> int:
        """Compiled, a batch smaller than one already run is filled up to it with copies of its last row: a
        new batch size would compile anew (a minute on CPU) and then run a slower dynamic-shape graph."""
        if self.model.compiled is None:
            return rows
        rows = max(rows, min(self._compiled_rows, self._rows[key]))
        self._compiled_rows = max(self._compiled_rows, rows)
        return rows

    def _search(self, lr, seeds, samples, opts, on_step, start=None):
        """One batch of the search; out of GPU memory, it halves the batch (for good) and carries on."""
        try:
            return search(self.model, lr, seeds, opts, progress=on_step, start=start, samples=samples)
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
            starts = (None, None) if start is None else (start[:half], start[half:])
            return (self._search(lr[:half], seeds[:half], samples[:half], replace(opts, eps=opts.eps[:half]), on_step,
                                 starts[0])
                    + self._search(lr[half:], seeds[half:], samples[half:], replace(opts, eps=opts.eps[half:]), on_step,
                                   starts[1]))


@dataclass
class _SearchRequest:
    """What a request means for the search: its options and the encoder its searches start from, if any."""

    options: SearchOptions
    encoder: LoadedEncoder | None

    @property
    def eps(self):
        return self.options.eps


def _memory_key(opts: SearchOptions) -> tuple:
    """The search options that change the memory a row needs (the activations kept for the backward pass)."""
    return opts.precision, opts.noise, opts.trainable_noise_layers


METHODS = ("pulse", "srresnet", "srgan")  # the search, and the feed-forward networks (``pulse.feedforward``)


def open_upsampler(method: str = "pulse", generator=None, device="auto", scale: float = 8,
                   batch_size: int | str = "auto", compile: bool = False, encoder=None):
    """The upsampler of ``method``: ``Upsampler`` (the search) or ``FeedForwardUpsampler`` (srresnet: the
    pixel-loss network; srgan: the adversarially trained one). Both have ``run``, ``stream``, ``resolution`` and
    ``device``. ``generator`` names the method's network (for srresnet/srgan an SR model file or registry name;
    default the registry's for the method and ``scale``); ``encoder`` the search's latent encoder."""
    if method == "pulse":
        return Upsampler(generator=generator, device=device, batch_size=batch_size, compile=compile, encoder=encoder)
    if method in METHODS:
        from .feedforward import BATCH, FeedForwardUpsampler

        for name, given in (("compile", compile), ("encoder", encoder)):
            if given:
                raise PulseError(f"{name}: a search option; {method} does not search")
        return FeedForwardUpsampler(generator, scale, device, BATCH if batch_size == "auto" else batch_size, method)
    raise PulseError(f"method {method!r}: choose from {', '.join(METHODS)}")


@lru_cache(maxsize=2)
def _cached_upsampler(method, generator, device, scale):
    return open_upsampler(method, generator, device, scale)


def _upsampler_for(method: str, generator, device, scale: float):
    """The network of ``upsample``: kept loaded between calls when named by a path or registry name; a network the
    caller loaded is used as it is (the caller holds it)."""
    if generator is not None and not isinstance(generator, (str, os.PathLike)):
        return open_upsampler(method, generator, device, scale)
    return _cached_upsampler(method, None if generator is None else str(generator), str(device),
                             scale if method != "pulse" else None)


def release_models() -> None:
    """Forget the networks ``upsample`` and ``upsample_samples`` keep loaded, and give their GPU memory back."""
    _cached_upsampler.cache_clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def upsample(img: ImageLike, scale: float = 8, seed: int = 0, generator=None, device="auto", method: str = "pulse",
             channel_order: str = "rgb", **options) -> Image.Image:
    """Super-resolve one face; returns one RGB PIL image (input size x scale). ``upsample_samples`` gives several.

    ``img``: a path, a PIL image, a uint8/uint16 numpy array (H, W[, C]) in ``channel_order`` ("bgr" for arrays
    from OpenCV), or a float tensor (C, H, W) in [0, 1], RGB. ``method``: "pulse" (the search), "srresnet" or
    "srgan" (one feed-forward pass, no search keywords). ``generator``: the method's network, as a registry name,
    a file, or a network already loaded (``pulse.load_generator``). A named network stays loaded between calls
    with the same method, generator and device; ``release_models()`` frees it. Keywords: eps, steps, loss,
    learning_rate, schedule, noise, early_stop, ... (the fields of ``SearchOptions``; not given: the generator's
    recommended settings).
    """
    if "samples" in options:
        raise PulseError("upsample returns one face; for several, use pulse.upsample_samples(img, samples=N)")
    return upsample_samples(img, 1, scale, seed, generator, device, method, channel_order, **options)[0]


def upsample_samples(img: ImageLike, samples: int = 4, scale: float = 8, seed: int = 0, generator=None,
                     device="auto", method: str = "pulse", channel_order: str = "rgb", **options) -> list[Image.Image]:
    """``samples`` different faces for one input (sample k from seed ``seed + k``), as a list of PIL images;
    otherwise as ``upsample``."""
    upsampler = _upsampler_for(method, generator, device, scale)
    return [r.image for r in upsampler.run([as_rgb_array(img, channel_order)], scale=scale, samples=samples, seed=seed,
                                           **options)[0]]
