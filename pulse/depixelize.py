"""Pixelated input: find a mosaic's block grid and reduce the mosaic to its LR, one value per block.

A mosaic (a censored face, a pixelated screenshot, an LR face enlarged with nearest-neighbour) is an LR image
made by averaging blocks, shown at full size. Searched as a full-size image it would be enlarged again, and
explained with the wrong operator; reduced to its block means it is an LR that the box operator explains
exactly. Detection must be conservative, because a false positive silently changes a user's result: a grid is
accepted only when one block size and one offset per axis explain the image (edges on the grid lines, nearly
none inside blocks, in both directions) and every block is of nearly constant colour (JPEG noise allowed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .errors import PulseError
from .imageio import load_image

MIN_BLOCK = 2
MAX_BLOCK = 64  # larger blocks are not looked for (a 1024 px mosaic of a 16 px face has 64 px blocks)
MIN_BLOCKS = 4  # whole blocks per axis: fewer, and a few edges could fall on a grid by chance
MIN_JUMP = 2.0  # mean luma step (8-bit levels) across a grid line: below it the line shows no visible edge
LINES_WITH_EDGES = 0.5  # share of the grid lines with a visible step: one straight edge does not make a grid
INSIDE_SHARE = 0.35  # mean edge strength inside blocks, at most this share of the strength on the grid lines
INSIDE_PEAK = 0.6  # no position inside the blocks may carry edges this strong (a share of the grid lines')
BLOCK_NOISE = 10.0  # 90th percentile of the blocks' RMS deviation from their mean (8-bit levels): JPEG q40 fits
JPEG_BLOCK = 8
JPEG_LATTICE_NOISE = 5.0  # the same, for a grid on JPEG's own 8 px lattice: a heavily compressed photo is blocky there
LUMA = np.array([0.299, 0.587, 0.114])  # detection on luma: JPEG keeps it at full resolution, unlike colour
PIXELATED_MODES = ("auto", "off")


@dataclass(frozen=True)
class Grid:
    """Square blocks of ``block`` px; the first whole block starts at (``x``, ``y``); ``columns`` x ``rows`` whole
    blocks. Partial blocks at the edges (a grid offset, a cropped mosaic) are left out of the LR."""

    block: int
    x: int
    y: int
    columns: int
    rows: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The region of whole blocks: (left, top, right, bottom) in the mosaic's pixels."""
        return self.x, self.y, self.x + self.columns * self.block, self.y + self.rows * self.block

    def report(self) -> dict:
        return {"block": self.block, "offset": [self.x, self.y], "blocks": [self.columns, self.rows]}

    def describe(self) -> str:
        left, top, right, bottom = self.box
        return (f"{self.block} px blocks from ({self.x}, {self.y}), {self.columns}x{self.rows} whole blocks "
                f"(pixels {left}-{right} x {top}-{bottom})")


@dataclass
class Detection:
    """What ``detect_grid`` found: a grid, or None and why not (one line, for the user). ``near``: no grid, but
    grid lines were there (blocks too noisy, or several sizes fit): worth telling the user even unasked."""

    grid: Grid | None
    reason: str
    near: bool = False


def _edge_profile(luma: np.ndarray, axis: int) -> np.ndarray:
    """Mean absolute step between neighbouring columns (axis 1) or rows (axis 0): entry p is between p and p+1."""
    return np.abs(np.diff(luma, axis=axis)).mean(axis=1 - axis)


def _axis_offsets(profile: np.ndarray, block: int) -> list[int]:
    """Offsets o (first whole block starts at o) for which the grid lines of ``block`` px carry the edges and the
    insides of the blocks nearly none. Steps are pooled by their position inside a block: JPEG's own 8 px grid
    and its ringing leave edges inside a mosaic's blocks, but spread over its positions, never as strong as the
    mosaic's lines."""
    n = len(profile) + 1
    residue = (np.arange(len(profile)) + 1) % block  # step p lies on a grid line of offset o iff p + 1 = o mod block
    means = np.bincount(residue, weights=profile, minlength=block) / np.maximum(np.bincount(residue, minlength=block), 1)
    found = []
    for offset in range(block):
        if (n - offset) // block < MIN_BLOCKS:
            continue
        on_lines, inside = means[offset], np.delete(means, offset)
        lines_with_edges = (profile[residue == offset] >= MIN_JUMP).mean()
        if (lines_with_edges >= LINES_WITH_EDGES and inside.mean() <= INSIDE_SHARE * on_lines
                and inside.max() <= INSIDE_PEAK * on_lines):
            found.append(offset)
    return found


def _block_noise(luma: np.ndarray, grid: Grid) -> float:
    """90th percentile over the whole blocks of their RMS deviation from their own mean (8-bit levels)."""
    left, top, right, bottom = grid.box
    blocks = luma[top:bottom, left:right].reshape(grid.rows, grid.block, grid.columns, grid.block)
    deviation = blocks - blocks.mean(axis=(1, 3), keepdims=True)
    return float(np.percentile(np.sqrt((deviation ** 2).mean(axis=(1, 3))), 90))


def _noise_allowed(grid: Grid) -> float:
    """The block noise a grid may show. A grid whose lines are JPEG's (8 px blocks from 0, 4 px, 16 px ...) could be
    a photo compressed until its 8 px blocks went flat, so there the blocks must be flatter."""
    nested = JPEG_BLOCK % grid.block == 0 or grid.block % JPEG_BLOCK == 0
    step = min(grid.block, JPEG_BLOCK)
    on_lattice = nested and grid.x % step == 0 and grid.y % step == 0
    return JPEG_LATTICE_NOISE if on_lattice else BLOCK_NOISE


def _candidates(profile: np.ndarray) -> dict[int, list[int]]:
    """Block size -> the offsets that pass on this axis."""
    n = len(profile) + 1
    return {block: offsets for block in range(MIN_BLOCK, min(n // MIN_BLOCKS, MAX_BLOCK) + 1)
            if (offsets := _axis_offsets(profile, block))}


def detect_grid(image: Image.Image | np.ndarray) -> Detection:
    """The mosaic's grid, if exactly one explains the image; else ``grid`` None and the reason.

    A block size qualifies when one offset per axis puts the edges on its lines and its whole blocks are of one
    colour. Divisors of the true block size qualify too (a 4 px grid's lines are among a 2 px grid's), so the
    largest is the grid, provided every other qualifying size divides it; anything else is ambiguous and taken
    for no mosaic."""
    rgb = np.asarray(image, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    luma = rgb @ LUMA
    height, width = luma.shape
    if min(height, width) < MIN_BLOCK * MIN_BLOCKS:
        return Detection(None, f"{width}x{height} is too small to hold a mosaic")
    across, down = _candidates(_edge_profile(luma, 1)), _candidates(_edge_profile(luma, 0))
    lined_up = [Grid(block, across[block][0], down[block][0], (width - across[block][0]) // block,
                     (height - down[block][0]) // block)
                for block in sorted(set(across) & set(down)) if len(across[block]) == len(down[block]) == 1]
    if not lined_up:
        return Detection(None, "no block grid (edges are not on the lines of any grid)")
    noise = {grid.block: _block_noise(luma, grid) for grid in lined_up}
    grids = [grid for grid in lined_up if noise[grid.block] <= _noise_allowed(grid)]
    if not grids:
        grid = lined_up[-1]
        return Detection(None, f"{grid.block} px grid lines, but the blocks are not of one colour "
                               f"(noise {noise[grid.block]:.1f} levels)", near=True)
    grid = grids[-1]
    if any(grid.block % other.block for other in grids):
        sizes = ", ".join(str(other.block) for other in grids[:6]) + (", ..." if len(grids) > 6 else "")
        return Detection(None, f"ambiguous block grid (block sizes {sizes} px fit)", near=True)
    return Detection(grid, f"mosaic of {grid.describe()}, block noise {noise[grid.block]:.1f} levels")


def reduce_mosaic(image: Image.Image | np.ndarray, grid: Grid) -> torch.Tensor:
    """The LR the mosaic shows: each whole block's mean colour, (3, rows, columns) float32 in [0, 1]."""
    rgb = np.asarray(image, dtype=np.float64)
    left, top, right, bottom = grid.box
    blocks = rgb[top:bottom, left:right].reshape(grid.rows, grid.block, grid.columns, grid.block, 3)
    return torch.from_numpy(blocks.mean(axis=(1, 3)) / 255).permute(2, 0, 1).float().contiguous()


def pixelated_mode(value: str) -> str | int:
    """``--pixelated``: "auto", "off", or a block size in px (the grid's offset is then still found)."""
    value = str(value).strip().lower()
    if value in PIXELATED_MODES:
        return value
    if value.isdigit() and int(value) >= MIN_BLOCK:
        return int(value)
    raise PulseError(f"--pixelated: expected auto, off or a block size >= {MIN_BLOCK} px, got {value!r}")


def find_mosaic(image: Image.Image, mode: str | int, name: str = "input") -> Detection:
    """The grid to reduce ``image`` with under ``mode`` (see ``pixelated_mode``): "off" never, "auto" when one
    grid is unambiguous, a block size N when a grid of N px blocks fits (else PulseError naming ``name``)."""
    if mode == "off":
        return Detection(None, "--pixelated off")
    found = detect_grid(image)
    if mode == "auto" or (found.grid is not None and found.grid.block == mode):
        return found
    grid = _grid_of_block(np.asarray(image, dtype=np.float64) @ LUMA, mode)
    if grid is None:
        raise PulseError(f"{name}: no grid of {mode} px blocks fits this image ({found.reason})")
    return Detection(grid, f"mosaic of {grid.describe()} (block size given)")


def _grid_of_block(luma: np.ndarray, block: int) -> Grid | None:
    """The grid of a given block size, if one offset per axis puts the edges on its lines and its blocks are of
    one colour (the user vouches for the size: other sizes that fit too do not make it ambiguous)."""
    height, width = luma.shape
    offsets = [_axis_offsets(_edge_profile(luma, axis), block) for axis in (1, 0)]
    if min(height, width) < block * MIN_BLOCKS or any(len(found) != 1 for found in offsets):
        return None
    (x,), (y,) = offsets
    grid = Grid(block, x, y, (width - x) // block, (height - y) // block)
    return grid if _block_noise(luma, grid) <= _noise_allowed(grid) else None


class _TooLargeForAMosaic(PulseError):
    """Raised from an image's header: no mosaic of at most MAX_BLOCK px blocks could fit the generator."""


def _check_mosaic_size(width: int, height: int, resolution: int) -> None:
    if max(width, height) > resolution * MAX_BLOCK:
        raise _TooLargeForAMosaic(f"{width}x{height}")


@dataclass
class Mosaic:
    """A pixelated input reduced: its grid, its LR (one value per whole block) and what was found, in words."""

    grid: Grid
    lr: torch.Tensor  # (3, rows, columns) in [0, 1]
    reason: str


def stream_depixelized(upsampler, paths: Sequence[Path], mode: str | int, scale: float, scale_given: bool,
                       note: Callable[[str], None], verbose: bool = False,
                       **stream_options) -> Iterator[tuple[int, list | PulseError, Mosaic | None]]:
    """``upsampler.stream`` over files, with each mosaic among them (``find_mosaic`` under ``mode``) replaced by
    its LR, searched with the box operator and delivered at the mosaic's own size (x its block size) unless
    ``scale_given``. Yields (index, results or PulseError, the Mosaic or None), grouped by scale and operator
    rather than in input order. ``note`` gets one line per mosaic found, and per input that nearly was one (all
    inputs that were not, with ``verbose``)."""
    if mode == "off":
        for i, found in upsampler.stream(list(paths), scale=scale, **stream_options):
            yield i, found, None
        return
    from .inputs import check_lr_size, output_size

    searches_box = upsampler.method == "pulse"
    groups: dict[tuple[float, str | None], list[tuple[int, Path | torch.Tensor, Mosaic | None]]] = {}
    for i, path in enumerate(paths):
        try:
            try:
                image = load_image(path, check_size=partial(_check_mosaic_size, resolution=upsampler.resolution))
            except _TooLargeForAMosaic:  # the search refuses it from its header, as any input too large
                groups.setdefault((scale, None), []).append((i, path, None))
                continue
            detection = find_mosaic(image, mode, str(path))
            if detection.grid is None:
                if detection.near or verbose:
                    note(f"{path}: not taken for a mosaic ({detection.reason}); searched as an ordinary image")
                groups.setdefault((scale, None), []).append((i, path, None))
                continue
            mosaic = Mosaic(detection.grid, reduce_mosaic(image, detection.grid), detection.reason)
            columns, rows = detection.grid.columns, detection.grid.rows
            check_lr_size(columns, rows, upsampler.resolution, f"{path} (its mosaic's LR)")
            own_scale = scale if scale_given or not searches_box else detection.grid.block
            output_size(columns, own_scale, str(path))
        except PulseError as err:
            yield i, err, None
            continue
        operator = "box" if searches_box else None
        note(f"{path}: {mosaic.reason}: searched as its {columns} px LR"
             + (" with the box operator" if operator else "") + f", delivered at x{own_scale:g}")
        groups.setdefault((own_scale, operator), []).append((i, mosaic.lr, mosaic))
    for (own_scale, operator), members in groups.items():
        options = {**stream_options, **({"degradation": operator} if operator else {})}
        for j, found in upsampler.stream([source for _, source, _ in members], scale=own_scale, **options):
            yield members[j][0], found, members[j][2]
