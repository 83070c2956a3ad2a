"""`pulse eval`: degrade known faces, super-resolve them, and measure each method against the truth.

For each aligned HR face: HR at the generator's resolution (larger faces shrunk with ``resize``), LR =
``resize(HR, resolution // scale)`` rounded to 8 bits as a saved file would be (or made with another operator,
box for a mosaic, and JPEG-compressed: how real LR inputs come), then every method's 8-bit output is scored: LR
consistency (what PULSE promises, judged with the operator that made the LR), fidelity and perceptual distance
to HR (what it does not promise), identity (does it stay the same person?), detectability, diversity between
samples, time. Bicubic is the baseline that shows what the numbers mean.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from ..errors import PulseError
from ..imageio import load_image, pil_to_tensor, psnr_from_mse, quantize, tensor_to_pil
from ..resample import DEFAULT_KERNEL, resize
from ..sampling import labelled_grid
from ..training.degrade import degradation_generator, degrade
from . import metrics

METHODS = ("bicubic", "srresnet", "srgan", "pulse")
FEEDFORWARD = ("srresnet", "srgan")




GRID_CELL_MAX = 256  # grid cells are the faces at the generator's resolution, at most this many px


@dataclass
class Face:
    """One evaluation case: the true face and what the methods are given."""

    name: str  # file name
    hr: torch.Tensor  # (3, resolution, resolution), 8-bit levels
    lr: torch.Tensor  # (3, resolution // scale, ...), 8-bit levels


@dataclass
class Output:
    method: str
    image: torch.Tensor  # (3, resolution, resolution), 8-bit levels
    seconds: float
    sample: int = 0
    seed: int | None = None


@dataclass
class Evaluation:
    rows: list[dict] = field(default_factory=list)  # one per output, CSV_COLUMNS
    faces: int = 0
    hr_detected: int = 0  # faces in which dlib finds a face on the HR itself: the ceiling for outputs
    grid_rows: list[tuple[Face, list[Output]]] = field(default_factory=list)


def load_face(path, resolution: int, scale: int, lr_kernel: str = DEFAULT_KERNEL,
              jpeg_quality: int | None = None, degradation: torch.Generator | None = None) -> Face:
    """An aligned HR face file -> HR at ``resolution`` and its LR, both 8-bit; PulseError naming the file."""
    hr = pil_to_tensor(load_image(path))
    h, w = hr.shape[-2:]
    if h != w:
        raise PulseError(f"{path}: {w}x{h} is not square; eval needs aligned faces (see `pulse align`)")
    if h < resolution:
        raise PulseError(f"{path}: {w}x{h} is smaller than the {resolution} px evaluation size")
    return make_face(Path(path).name, hr, resolution, scale, lr_kernel, jpeg_quality, degradation)


def make_face(name: str, hr: torch.Tensor, resolution: int, scale: int, lr_kernel: str = DEFAULT_KERNEL,
              jpeg_quality: int | None = None, degradation: torch.Generator | None = None) -> Face:
    """A square HR face (3, H, W) in [0, 1] -> HR at ``resolution`` and its LR (downscaled with ``lr_kernel``,
    then JPEG-compressed at ``jpeg_quality`` if given), both 8-bit. With ``degradation`` (a generator of
    ``training.degrade``'s draws) the LR is instead the HR blurred, resized, noisy and JPEG'd as photos are."""
    hr = quantize(resize(hr, resolution))
    if degradation is not None:
        return Face(name, hr, degrade(hr[None], resolution // scale, degradation)[0])
    lr = quantize(resize(hr, resolution // scale, lr_kernel))
    if jpeg_quality is not None:
        buffer = io.BytesIO()
        tensor_to_pil(lr).save(buffer, format="JPEG", quality=jpeg_quality)
        lr = pil_to_tensor(Image.open(buffer).convert("RGB"))
    return Face(name, hr, lr)


def bicubic_output(face: Face, resolution: int) -> Output:
    started = time.perf_counter()
    image = quantize(resize(face.lr, resolution))
    return Output("bicubic", image, time.perf_counter() - started)


@dataclass
class Context:
    """What scoring one face's outputs needs besides the face and the output."""

    eps: float
    device: str | torch.device = "cpu"
    hr_embedding: np.ndarray | None = None  # the true face's dlib descriptor (identity metrics)
    lr_kernel: str = DEFAULT_KERNEL  # the operator that made the LR: consistency is judged with it


def _stats(values: list[float], digits: int) -> str:
    if not values:
        return "n/a"
    spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.{digits}f}{spread} ({statistics.median(values):.{digits}f})"


def _share(flags: list[bool]) -> str:
    return f"{100 * sum(flags) / len(flags):.0f}% ({sum(flags)}/{len(flags)})" if flags else "n/a"


def _per_face(rows: list[dict], column: str, combine) -> list[float]:
    """One value per face from its outputs' rows (e.g. seconds summed over samples)."""
    by_face: dict[str, list[float]] = {}
    for row in rows:
        if row[column] is not None:
            by_face.setdefault(row["image"], []).append(row[column])
    return [combine(values) for values in by_face.values()]


def _lr_consistency(face: Face, out: Output, ctx: Context) -> dict:
    lr_mse = float((resize(out.image, face.lr.shape[-1], ctx.lr_kernel) - face.lr).pow(2).mean())
    return dict(lr_mse=lr_mse, lr_psnr=psnr_from_mse(lr_mse), lr_within_eps=lr_mse <= ctx.eps)


def _identity(face: Face, out: Output, ctx: Context) -> dict:
    distance = metrics.distance_to(out.image, ctx.hr_embedding)
    return dict(identity_distance=distance, same_identity=distance < metrics.SAME_PERSON_DISTANCE)


def _mean(digits: int) -> Callable[[list], str]:
    return lambda values: _stats(values, digits)


@dataclass(frozen=True)
class Metric:
    """One measurement: the CSV columns it fills per output, how it is scored, and its summary lines
    ``(label, column, summarise)``; labels may use {eps}. ``needs``: the optional model it needs (skipped,
    columns empty, when missing); ``score`` None: filled per face by ``evaluate`` (diversity).
    Adding a metric is one entry in ``METRICS``."""

    columns: tuple[str, ...]
    score: Callable[[Face, Output, Context], dict] | None
    summary: tuple[tuple[str, str, Callable[[list], str]], ...]
    needs: str | None = None
    per_face: Callable[[list[float]], float] | None = None  # combine one face's outputs before summarising


METRICS = (
    Metric(("lr_mse", "lr_psnr", "lr_within_eps"), _lr_consistency,
           (("LR-PSNR, output downscaled vs input (dB) ↑", "lr_psnr", _mean(2)),
            ("LR MSE within eps = {eps:g}", "lr_within_eps", _share))),
    Metric(("psnr",), lambda face, out, ctx: dict(psnr=metrics.psnr(out.image, face.hr)),
           (("PSNR vs HR (dB) ↑", "psnr", _mean(2)),)),
    Metric(("ssim",), lambda face, out, ctx: dict(ssim=metrics.ssim(out.image, face.hr)),
           (("SSIM vs HR (RGB mean) ↑", "ssim", _mean(4)),)),
    Metric(("lpips",), lambda face, out, ctx: dict(lpips=metrics.lpips(out.image.to(ctx.device),
                                                                        face.hr.to(ctx.device))),
           ((f"LPIPS vs HR ({metrics.LPIPS_NAME}) ↓", "lpips", _mean(4)),), needs="lpips"),
    Metric(("identity_distance", "same_identity"), _identity,
           (("identity distance to HR (dlib) ↓", "identity_distance", _mean(3)),
            (f"same person as HR (distance < {metrics.SAME_PERSON_DISTANCE})", "same_identity",
             _share)), needs="identity"),
    Metric(("face_detected",), lambda face, out, ctx: dict(face_detected=metrics.detect_face(out.image)),
           (("face detected (dlib HOG)", "face_detected", _share),)),
    Metric(("diversity_lpips",), None,
           (("diversity: mean LPIPS between samples of a face ↑", "diversity_lpips", _mean(4)),), needs="lpips",
           per_face=lambda values: values[0]),
    Metric(("seconds",), lambda face, out, ctx: dict(seconds=out.seconds),
           (("seconds per face", "seconds", _mean(4)),), per_face=sum),
)
CSV_COLUMNS = ("image", "method", "sample", "seed") + tuple(c for m in METRICS for c in m.columns)


def score_output(face: Face, out: Output, ctx: Context, skip: set[str]) -> dict:
    """One CSV row: every metric of one output that can be computed here (missing ones stay None). LPIPS runs
    on ``ctx.device`` (the search's: at 1024 px it is slow on a CPU); dlib's metrics always run on the CPU."""
    row = dict.fromkeys(CSV_COLUMNS)
    row.update(image=face.name, method=out.method, sample=out.sample, seed=out.seed)
    for metric in METRICS:
        if metric.score is not None and metric.needs not in skip:
            row.update(metric.score(face, out, ctx))
    return row


def evaluate(files: list[Path], resolution: int, scale: int, methods=METHODS, upsampler=None, samples: int = 1,
             seed: int = 0, eps: float = 2e-3, grid_faces: int = 8, on_face: Callable[[str], None] | None = None,
             on_error: Callable[[str], None] | None = None, feedforward: dict | None = None,
             lr_kernel: str = DEFAULT_KERNEL, jpeg_quality: int | None = None, degraded_seed: int | None = None,
             **search_options) -> Evaluation:
    """Score ``methods`` on every face file. ``upsampler`` (a ``pulse.Upsampler``) is needed for "pulse",
    ``feedforward`` ({method: ``FeedForwardUpsampler``}) for "srresnet" and "srgan"; faces that cannot be read are
    reported through ``on_error`` and left out. The LR is made with ``lr_kernel`` (then JPEG at ``jpeg_quality``
    if given); the search explains it with ``search_options``' ``degradation`` (default: the same operator), and
    every output's LR consistency is judged with ``lr_kernel``, however the method explained it. With
    ``degraded_seed`` the LR is instead Real-ESRGAN's degradation of the face (``training.degrade``), one fixed
    draw per face from the seed and the file's position in ``files``: the same draws as
    ``benchmarks/sr_rule.py --degraded``, so every method meets the same degraded copy of the faces."""
    feedforward = feedforward or {}
    if resolution % scale:
        raise PulseError(f"scale {scale} does not divide the {resolution} px evaluation size")
    if "pulse" in methods and upsampler is None:
        raise PulseError("the pulse method needs a generator (an Upsampler)")
    for method in set(methods) & set(FEEDFORWARD) - set(feedforward):
        raise PulseError(f"the {method} method needs an SR model (a FeedForwardUpsampler)")
    skip = set(metrics.unavailable())
    result = Evaluation()
    device = upsampler.device if upsampler else next(iter(feedforward.values())).device if feedforward else "cpu"

    def score(face: Face, pulse_results) -> None:
        outputs = [bicubic_output(face, resolution)] if "bicubic" in methods else []
        for method in (m for m in FEEDFORWARD if m in methods):
            r = feedforward[method].run([face.lr], scale=scale, eps=eps)[0][0]
            outputs.append(Output(method, pil_to_tensor(r.image), r.seconds))
        outputs += [Output("pulse", pil_to_tensor(r.image), r.seconds, r.sample, r.seed) for r in pulse_results]
        result.faces += 1
        result.hr_detected += metrics.detect_face(face.hr)
        ctx = Context(eps, device, None if "identity" in skip else metrics.face_embedding(face.hr), lr_kernel)
        rows = [score_output(face, out, ctx, skip) for out in outputs]
        pulse_images = [out.image for out in outputs if out.method == "pulse"]
        if len(pulse_images) > 1 and "lpips" not in skip:
            diversity = statistics.fmean(metrics.lpips(a.to(device), b.to(device))
                                         for a, b in combinations(pulse_images, 2))
            for row in rows:
                if row["method"] == "pulse":
                    row["diversity_lpips"] = diversity
        result.rows += rows
        if len(result.grid_rows) < grid_faces:
            result.grid_rows.append((face, outputs))
        if on_face:
            on_face(face.name)

    search_options.setdefault("degradation", lr_kernel)
    faces = _readable_faces(files, resolution, scale, on_error, lr_kernel, jpeg_quality, degraded_seed)
    if "pulse" not in methods:
        for face in faces:
            score(face, [])
        return result
    loaded: dict[int, Face] = {}  # faces whose search is under way, by their index in the stream

    def lrs():
        for i, face in enumerate(faces):
            loaded[i] = face
            yield face.lr

    for i, found in upsampler.stream(lrs(), scale=scale, samples=samples, seed=seed, eps=eps, **search_options):
        face = loaded.pop(i)
        if isinstance(found, PulseError):
            if on_error:
                on_error(str(found))
            continue
        score(face, found)
    return result


def _readable_faces(files, resolution: int, scale: int, on_error, lr_kernel: str, jpeg_quality: int | None,
                    degraded_seed: int | None = None) -> Iterator[Face]:
    """Each file's face, read as needed; one that cannot be read goes to ``on_error`` and is left out."""
    for index, path in enumerate(files):
        draws = None if degraded_seed is None else degradation_generator(degraded_seed, index)
        try:
            yield load_face(path, resolution, scale, lr_kernel, jpeg_quality, draws)
        except PulseError as err:
            if on_error:
                on_error(str(err))


def summary_table(evaluation: Evaluation, methods, eps: float) -> str:
    """Markdown: one row per metric line, one column per method; cells are mean ± std (median) over outputs
    (or over faces, for metrics combined per face)."""
    lines = ["| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for metric in METRICS:
        for label, column, summarise in metric.summary:
            cells = []
            for method in methods:
                rows = [r for r in evaluation.rows if r["method"] == method]
                values = (_per_face(rows, column, metric.per_face) if metric.per_face else
                          [r[column] for r in rows if r[column] is not None])
                cells.append(summarise(values))
            lines.append(f"| {label.format(eps=eps)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict]) -> str:
    """Rows as CSV: floats to 6 significant digits, flags as 1/0, missing metrics empty."""
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, bool):
            return int(v)
        return f"{v:.6g}" if isinstance(v, float) else v

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows([cell(row[c]) for c in CSV_COLUMNS] for row in rows)
    return buffer.getvalue()


def comparison_grid(grid_rows: list[tuple[Face, list[Output]]], scale: int) -> Image.Image:
    """Faces top to bottom; LR (nearest-upscaled) | each output | HR left to right, under labelled columns."""
    if not grid_rows:
        raise PulseError("no faces to put in the grid")
    first_face, first_outputs = grid_rows[0]
    cell = min(first_face.hr.shape[-1], GRID_CELL_MAX)
    samples = sum(out.method == "pulse" for out in first_outputs)
    labels = [f"LR {first_face.lr.shape[-1]} px (x{scale})"]
    labels += [out.method if out.method != "pulse" or samples == 1 else f"pulse #{out.sample}" for out in first_outputs]
    labels.append("HR")
    rows = []
    for face, outputs in grid_rows:
        tiles = [tensor_to_pil(face.lr).resize((cell, cell), Image.Resampling.NEAREST)]
        tiles += [tensor_to_pil(resize(t, cell)) for t in [out.image for out in outputs] + [face.hr]]
        rows.append(tiles)
    return labelled_grid(labels, rows, cell)
