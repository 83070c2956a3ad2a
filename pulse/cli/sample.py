"""`pulse sample`: random faces from a generator, as one grid."""

from __future__ import annotations

import click

from ..devices import select_device
from ..errors import PulseError
from ..imageio import save_image
from ..sampling import image_grid, sample_images
from ..weights.resolve import open_generator
from .common import PulseCommand, device_option, generator_option, output_option, say


@click.command("sample", cls=PulseCommand)
@generator_option
@click.option("--n", type=click.IntRange(1, 1024), default=16, show_default=True, help="How many faces.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same faces.")
@click.option("--columns", type=click.IntRange(1), help="Faces per row [default: about square].")
@click.option("--truncation", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Pull each w towards the average w: 1 = none; lower gives typical faces, less variety.")
@device_option()
@output_option(None, "Grid image to write (PNG, JPEG).", file=True, required=True)
def sample_command(generator, n, seed, columns, truncation, device, output):
    """Random faces from a generator, as one grid image.

    \b
    Examples:
      pulse sample --output grid.png
      pulse sample --generator runs/faces128/generator.pt --n 16 --seed 0 --output grid.png
      pulse sample --truncation 0.7 --output typical.png
    """
    model = open_generator(generator, select_device(device))
    try:
        faces = sample_images(model.generator, n, seed=seed, truncation=truncation)
        path = save_image(image_grid(faces, columns), output)
    except OSError as err:
        raise PulseError(f"{output}: could not write the grid ({err.strerror or err})")
    say(f"{n} faces: {path}")
