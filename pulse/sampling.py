"""Random faces from a generator, and grids of them: to see what a generator (or a training run) makes."""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw, ImageFont

from .imageio import tensor_to_pil
from .models.base import StyleGenerator


@torch.no_grad()
def sample_images(generator: StyleGenerator, n: int, seed: int = 0, batch: int = 16,
                  truncation: float = 1.0) -> torch.Tensor:
    """``n`` faces in [0, 1], (n, 3, res, res) on CPU; latents and noise come from ``seed`` alone.
    ``truncation`` psi < 1 renders w_avg + psi (w - w_avg) (``StyleGenerator.average_w``).

    Uses its own random generator, so it neither disturbs nor depends on the global random state: the same
    seed gives the same faces at every checkpoint of a run, and the same faces on any device.
    """
    rng = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    z = torch.randn(n, generator.style_dim, generator=rng)
    noise = [torch.randn(n, 1, h, w, generator=rng) for h, w in generator.noise_shapes()]
    centre = generator.average_w() if truncation != 1 else None
    images = []
    for start in range(0, n, batch):
        part = slice(start, start + batch)
        w = generator.mapping(z[part].to(device))
        if centre is not None:
            w = centre + truncation * (w - centre)
        ws = w.unsqueeze(1).expand(-1, generator.n_styles, -1)
        out = generator(ws=ws, noise=[m[part].to(device) for m in noise])
        images.append(((out.float() + 1) / 2).clamp(0, 1).cpu())
    return torch.cat(images)


def image_grid(images: torch.Tensor, columns: int | None = None, gap: int = 2) -> Image.Image:
    """(n, 3, h, w) images in [0, 1] -> one RGB picture, ``columns`` wide (default: about square), white gaps."""
    from torchvision.utils import make_grid  # imported here: it costs the CLI's start-up a second otherwise

    columns = min(columns or math.ceil(math.sqrt(images.size(0))), images.size(0))
    grid = make_grid(images.float().cpu(), nrow=columns, padding=gap, pad_value=1.0)
    return tensor_to_pil(grid)


GRID_HEADER = 16  # px of label above each column


def captioned(tile: Image.Image, text: str) -> Image.Image:
    """A copy of a grid tile with one line of white text on a black band along its bottom (a number worth reading
    beside the face, e.g. its PSNR)."""
    tile = tile.copy()
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, tile.height - 12, tile.width, tile.height), fill="black")
    draw.text((3, tile.height - 12), text, fill="white")
    return tile


def labelled_grid(labels: list[str], rows: list[list[Image.Image]], cell: int) -> Image.Image:
    """Rows of ``cell`` x ``cell`` pictures under one label per column (callers resize their tiles, each the
    way that suits it: nearest for LR pixels, antialiased for faces)."""
    grid = Image.new("RGB", (cell * len(labels), GRID_HEADER + cell * len(rows)), "white")
    font = ImageFont.load_default()
    for column, label in enumerate(labels):
        header = Image.new("RGB", (cell, GRID_HEADER), "white")
        ImageDraw.Draw(header).text((3, 2), label, fill="black", font=font)  # clipped to its own column
        grid.paste(header, (column * cell, 0))
    for row, tiles in enumerate(rows):
        for column, tile in enumerate(tiles):
            grid.paste(tile, (column * cell, GRID_HEADER + row * cell))
    return grid
