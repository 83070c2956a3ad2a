"""`pulse eval`: downscale held-out faces, super-resolve them, score and tabulate."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from ..errors import EXIT_INPUT_ERRORS, PulseError
from ..evaluation import metrics
from ..evaluation.evaluate import METHODS, comparison_grid, csv_text, evaluate, summary_table
from ..imageio import save_image, write_text_atomic
from .common import (
    PulseCommand,
    device_option,
    find_inputs,
    output_option,
    scale_option,
    verbose_option,
)


@click.command("eval", cls=PulseCommand)
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="A folder of aligned HR faces (square; at least the evaluation size).")
@output_option("pulse_eval", "Folder for summary.md, metrics.csv and grid.png.")
@scale_option("LR size = resolution / scale (a whole number).", whole=True, minimum=2)
@click.option("--methods", default="bicubic,pulse", show_default=True,
              help="Comma-separated: bicubic, srgan (the feed-forward network), pulse.")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1), help="pulse samples per face.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Only the first N faces (sorted by name).")
@click.option("--generator", default=None, metavar="NAME|FILE",
              help="pulse's generator: registry name or file (default: the bundled one).")
@click.option("--sr-model", default=None, metavar="NAME|FILE",
              help="srgan's network: registry name or file (default: the registry's model for the scale).")
@click.option("--resolution", default=None, type=click.IntRange(1),
              help="Evaluation size in px (default: the generator's); lets a bicubic-only run go without one.")
@click.option("--lr-kernel", default="bicubic", show_default=True, type=click.Choice(["bicubic", "box", "bilinear"]),
              help="How the LR is made from HR: bicubic = PULSE's; box = block averages, as a mosaic; bilinear. "
                   "LR consistency is judged with it.")
@click.option("--jpeg", "jpeg_quality", default=None, type=click.IntRange(1, 100),
              help="Also JPEG-compress the LR at this quality, as a thumbnail or a screenshot is.")
@click.option("--degradation", default=None, type=click.Choice(["bicubic", "box", "bilinear"]),
              help="The operator the search explains the LR with [default: --lr-kernel's].")
@click.option("--loss", default=None, help="The search's weighted loss terms (L2, L1, CHARB, GEOCROSS) [default: the "
              "generator's recommended, else 100*L2+0.05*GEOCROSS].")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(1), help="Search steps.")
@click.option("--eps", default=2e-3, show_default=True, type=float, help="LR MSE threshold counted as consistent.")
@click.option("--seed", default=0, show_default=True, type=int, help="pulse sample k uses seed + k.")
@device_option()
@click.option("--batch-size", default="auto", show_default=True,
              help="Faces x samples searched at once: a number, or auto (8 on a CPU; on a GPU, what fits in memory).")
@click.option("--compile", "compile_generator", is_flag=True,
              help="torch.compile the generator: faster steps after a compile of about a minute; for many faces.")
@click.option("--grid-faces", default=8, show_default=True, type=click.IntRange(0),
              help="Faces in grid.png (0: no grid).")
@verbose_option
def eval_command(data_dir, output, scale, methods, samples, limit, generator, sr_model, resolution, lr_kernel, jpeg_quality,
                 degradation, loss, steps, eps, seed, device, batch_size, compile_generator, grid_faces, verbose):
    """Evaluate pulse and srgan against bicubic on aligned HR faces whose truth is known.

    \b
    Examples:
      pulse eval --data faces/ --scale 8 --out report/
      pulse eval --data faces/ --methods bicubic --resolution 128 --limit 8
      pulse eval --data faces/ --samples 4 --grid-faces 4 --device cuda
      pulse eval --data faces/ --methods bicubic,srgan,pulse --scale 8
      pulse eval --data faces/ --lr-kernel box --jpeg 40 --degradation box --loss 100*L2+CHARB+0.05*GEOCROSS

    Each HR face is brought to the generator's resolution, downscaled by SCALE with pulse's own operator,
    and super-resolved by each method. Prints a markdown table (mean ± std (median) per metric and method)
    and writes summary.md, metrics.csv (one row per output) and grid.png. LPIPS and identity need
    `pip install "pulse[eval]"`; without it they are n/a. Exit codes: 0 done; 1 some faces could not be
    read (named on stderr); 2 usage or setup error.
    """

    say = lambda message: click.echo(message, err=True)  # noqa: E731
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not chosen or set(chosen) - set(METHODS):
        raise PulseError(f"--methods must list some of {', '.join(METHODS)}, got {methods!r}")
    files = find_inputs(data_dir, verbose)[:limit]
    upsampler = None
    if "pulse" in chosen:
        from ..api import Upsampler
        from ..memory import batch_size_arg

        upsampler = Upsampler(generator=generator, device=device, batch_size=batch_size_arg(batch_size),
                              compile=compile_generator)
        if resolution not in (None, upsampler.resolution):
            raise PulseError(f"--resolution {resolution} differs from the generator's {upsampler.resolution} px")
        resolution = upsampler.resolution
    feedforward = None
    if "srgan" in chosen:
        from ..feedforward import FeedForwardUpsampler

        feedforward = FeedForwardUpsampler(sr_model, scale, device)
        if resolution not in (None, feedforward.resolution):
            raise PulseError(f"{feedforward.model.source}: makes {feedforward.resolution} px faces, but the "
                             f"evaluation size is {resolution} px")
        resolution = feedforward.resolution
    if resolution is None:
        from ..weights.resolve import open_generator

        resolution = open_generator(generator).generator.resolution

    missing = metrics.unavailable()
    if missing:
        say(f"note: {' and '.join(missing)} need {', '.join(missing.values())} ({metrics.INSTALL_HINT}); "
            "reported as n/a")
    if compile_generator and upsampler:
        from ..api import COMPILE_NOTE

        say(COMPILE_NOTE)
    errors = []
    with click.progressbar(length=len(files), label="eval", file=sys.stderr, show_pos=True,
                           item_show_func=lambda s: s) as bar, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = {"steps": steps, **({"degradation": degradation} if degradation else {}),
                  **({"loss": loss} if loss else {})}
        evaluation = evaluate(files, resolution, scale, chosen, upsampler, samples=samples, seed=seed, eps=eps,
                              feedforward=feedforward, lr_kernel=lr_kernel, jpeg_quality=jpeg_quality,
                              grid_faces=grid_faces, on_error=errors.append,
                              on_face=lambda name: bar.update(1, name), **search)
    for message in dict.fromkeys(str(w.message) for w in caught):
        say(f"warning: {message}")
    for error in errors:
        say(f"error: {error}")
    if not evaluation.faces:
        say("error: no face could be evaluated")
        sys.exit(EXIT_INPUT_ERRORS)

    made = f"{lr_kernel}" + (f" + JPEG q{jpeg_quality}" if jpeg_quality else "")
    caption = (f"{evaluation.faces} faces from {data_dir}, {resolution} px, x{scale} (LR {resolution // scale} px, "
               f"made {made}; consistency judged with {lr_kernel})"
               + (f", pulse: {steps} steps, {samples} sample(s), seed {seed}, operator {degradation or lr_kernel}"
                  + (f", loss {loss}" if loss else "") if upsampler else "")
               + f". Cells: mean ± std (median) over outputs. dlib detects a face in "
               f"{evaluation.hr_detected}/{evaluation.faces} HR faces.\n\n")
    table = summary_table(evaluation, chosen, eps)
    click.echo(caption + table, nl=False)
    write_text_atomic(output / "summary.md", caption + table)
    write_text_atomic(output / "metrics.csv", csv_text(evaluation.rows))
    if grid_faces:
        save_image(comparison_grid(evaluation.grid_rows, scale), output / "grid.png")
    say(f"{evaluation.faces} faces evaluated, {len(errors)} failed; report: {output}")
    if errors:
        sys.exit(EXIT_INPUT_ERRORS)
