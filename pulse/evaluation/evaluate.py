"""`pulse eval`: degrade known faces, super-resolve them, and measure each method against the truth.

For each aligned HR face: HR at the generator's resolution (larger faces shrunk with ``resize``), LR =
``resize(HR, resolution // scale)`` rounded to 8 bits as a saved file would be, then every method's 8-bit
output is scored: LR consistency (what PULSE promises), fidelity and perceptual distance to HR (what it does
not promise), identity (does it stay the same person?), detectability, diversity between samples, time.
Bicubic is the baseline that shows what the numbers mean.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..errors import PulseError
from ..imageio import load_image, pil_to_tensor, psnr_from_mse, quantize, tensor_to_pil
from ..resample import resize
from ..sampling import labelled_grid
from . import metrics

METHODS = ("bicubic", "pulse")


CSV_COLUMNS = ("image", "method", "sample", "seed", "lr_mse", "lr_psnr", "lr_within_eps", "psnr", "ssim", "lpips",
               "identity_distance", "same_identity", "face_detected", "diversity_lpips", "seconds")


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


def load_face(path, resolution: int, scale: int) -> Face:
    """An aligned HR face file -> HR at ``resolution`` and its LR, both 8-bit; PulseError naming the file."""
    hr = pil_to_tensor(load_image(path))
    h, w = hr.shape[-2:]
    if h != w:
        raise PulseError(f"{path}: {w}x{h} is not square; eval needs aligned faces (see `pulse align`)")
    if h < resolution:
        raise PulseError(f"{path}: {w}x{h} is smaller than the {resolution} px evaluation size")
    return make_face(Path(path).name, hr, resolution, scale)


def make_face(name: str, hr: torch.Tensor, resolution: int, scale: int) -> Face:
    """A square HR face (3, H, W) in [0, 1] -> HR at ``resolution`` and its LR, both 8-bit."""
    hr = quantize(resize(hr, resolution))
    return Face(name, hr, quantize(resize(hr, resolution // scale)))


def bicubic_output(face: Face, resolution: int) -> Output:
    started = time.perf_counter()
    image = quantize(resize(face.lr, resolution))
    return Output("bicubic", image, time.perf_counter() - started)


def score_output(face: Face, out: Output, eps: float, skip: set[str], hr_embedding=None, device="cpu") -> dict:
    """One CSV row: every metric of one output that can be computed here (missing ones stay None). LPIPS runs
    on ``device`` (the search's: at 1024 px it is slow on a CPU); dlib's metrics always run on the CPU."""
    lr_mse = float((resize(out.image, face.lr.shape[-1]) - face.lr).pow(2).mean())
    row = dict.fromkeys(CSV_COLUMNS)
    row.update(image=face.name, method=out.method, sample=out.sample, seed=out.seed, lr_mse=lr_mse,
               lr_psnr=psnr_from_mse(lr_mse), lr_within_eps=lr_mse <= eps, psnr=metrics.psnr(out.image, face.hr),
               ssim=metrics.ssim(out.image, face.hr), face_detected=metrics.detect_face(out.image),
               seconds=out.seconds)
    if "lpips" not in skip:
        row["lpips"] = metrics.lpips(out.image.to(device), face.hr.to(device))
    if "identity" not in skip:
        distance = float(np.linalg.norm(metrics.face_embedding(out.image) - hr_embedding))
        row.update(identity_distance=distance, same_identity=distance < metrics.SAME_PERSON_DISTANCE)
    return row


def evaluate(files: list[Path], resolution: int, scale: int, methods=METHODS, upsampler=None, samples: int = 1,
             seed: int = 0, eps: float = 2e-3, grid_faces: int = 8, on_face: Callable[[str], None] | None = None,
             on_error: Callable[[str], None] | None = None, **search_options) -> Evaluation:
    """Score ``methods`` on every face file. ``upsampler`` (a ``pulse.Upsampler``) is needed for "pulse";
    faces that cannot be read are reported through ``on_error`` and left out."""
    if resolution % scale:
        raise PulseError(f"scale {scale} does not divide the {resolution} px evaluation size")
    if "pulse" in methods and upsampler is None:
        raise PulseError("the pulse method needs a generator (an Upsampler)")
    skip = set(metrics.unavailable())
    result = Evaluation()
    per_call = max(1, upsampler.fit_batch_size(eps=eps, **search_options) // samples) if "pulse" in methods else 1
    device = upsampler.device if upsampler else "cpu"
    for start in range(0, len(files), per_call):
        faces = []
        for path in files[start : start + per_call]:
            try:
                faces.append(load_face(path, resolution, scale))
            except PulseError as err:
                if on_error:
                    on_error(str(err))
        outputs = [[bicubic_output(face, resolution)] if "bicubic" in methods else [] for face in faces]
        if "pulse" in methods and faces:
            found = upsampler.run([f.lr for f in faces], scale=scale, samples=samples, seed=seed, eps=eps,
                                  **search_options)
            for face_outputs, per_sample in zip(outputs, found):
                face_outputs += [Output("pulse", pil_to_tensor(r.image), r.seconds, r.sample, r.seed)
                                 for r in per_sample]
        for face, face_outputs in zip(faces, outputs):
            result.faces += 1
            result.hr_detected += metrics.detect_face(face.hr)
            hr_embedding = None if "identity" in skip else metrics.face_embedding(face.hr)
            rows = [score_output(face, out, eps, skip, hr_embedding, device) for out in face_outputs]
            pulse_images = [out.image for out in face_outputs if out.method == "pulse"]
            if len(pulse_images) > 1 and "lpips" not in skip:
                diversity = statistics.fmean(metrics.lpips(a.to(device), b.to(device))
                                             for a, b in combinations(pulse_images, 2))
                for row in rows:
                    if row["method"] == "pulse":
                        row["diversity_lpips"] = diversity
            result.rows += rows
            if len(result.grid_rows) < grid_faces:
                result.grid_rows.append((face, face_outputs))
            if on_face:
                on_face(face.name)
    return result


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


def summary_table(evaluation: Evaluation, methods, eps: float) -> str:
    """Markdown: one row per metric, one column per method; cells are mean ± std (median) over outputs."""
    lines = ["| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]

    def add(label: str, cell: Callable[[list[dict]], str]):
        cells = [cell([r for r in evaluation.rows if r["method"] == m]) for m in methods]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def values(column):
        return lambda rows: [r[column] for r in rows if r[column] is not None]

    add("LR-PSNR, output downscaled vs input (dB) ↑", lambda rows: _stats(values("lr_psnr")(rows), 2))
    add(f"LR MSE within eps = {eps:g}", lambda rows: _share(values("lr_within_eps")(rows)))
    add("PSNR vs HR (dB) ↑", lambda rows: _stats(values("psnr")(rows), 2))
    add("SSIM vs HR (RGB mean) ↑", lambda rows: _stats(values("ssim")(rows), 4))
    add(f"LPIPS vs HR ({metrics.LPIPS_NAME}) ↓", lambda rows: _stats(values("lpips")(rows), 4))
    add("identity distance to HR (dlib) ↓", lambda rows: _stats(values("identity_distance")(rows), 3))
    add(f"same person as HR (distance < {metrics.SAME_PERSON_DISTANCE})",
        lambda rows: _share(values("same_identity")(rows)))
    add("face detected (dlib HOG)", lambda rows: _share(values("face_detected")(rows)))
    add("diversity: mean LPIPS between samples of a face ↑",
        lambda rows: _stats(_per_face(rows, "diversity_lpips", lambda v: v[0]), 4))
    add("seconds per face", lambda rows: _stats(_per_face(rows, "seconds", sum), 4))
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
