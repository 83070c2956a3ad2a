"""`pulse sample`: random faces from a generator file, as one grid."""

from __future__ import annotations

import click

from ..devices import select_device
from ..errors import PulseError
from ..imageio import save_image
from ..models.generator_file import load_generator
from ..sampling import image_grid, sample_images
from .common import say


@click.command("sample")
@click.option("--generator", "generator_path", required=True, type=click.Path(dir_okay=False),
              help="A pulse generator file.")
@click.option("--n", type=click.IntRange(1, 1024), default=16, show_default=True, help="How many faces.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same faces.")
@click.option("--columns", type=click.IntRange(1), help="Faces per row [default: about square].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Grid image to write (PNG, JPEG).")
def sample_command(generator_path, n, seed, columns, device, out):
    """Random faces from a generator file, as one grid image.

    \b
    Example:
      pulse sample --generator runs/faces128/generator.pt --n 16 --seed 0 --out grid.png
    """
    try:
        model = load_generator(generator_path, device=select_device(device))
        path = save_image(image_grid(sample_images(model.generator, n, seed=seed), columns), out)
    except PulseError as err:
        raise click.ClickException(str(err))
    except OSError as err:
        raise click.ClickException(f"{out}: could not write the grid ({err.strerror or err})")
    say(f"{n} faces: {path}")
