"""`pulse eval`: downscale held-out faces, super-resolve them, score and tabulate."""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import click

from ..errors import EXIT_INPUT_ERRORS, PulseError
from ..evaluation import metrics
from ..evaluation.evaluate import FEEDFORWARD, METHODS, comparison_grid, csv_text, evaluate, summary_table
from ..imageio import save_image, write_text_atomic
from ..progress import progress_bar
from ..resample import KERNELS
from ..search import SearchOptions
from .common import (
    PulseCommand,
    device_option,
    find_inputs,
    given_search_options,
    output_option,
    scale_option,
    search_options,
    verbose_option,
)


@click.command("eval", cls=PulseCommand)
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="A folder of aligned HR faces (square; at least the evaluation size).")
@output_option("pulse_eval", "Folder for summary.md, metrics.csv and grid.png.")
@scale_option("LR size = resolution / scale (a whole number).", whole=True, minimum=2)
@click.option("--methods", default="bicubic,pulse", show_default=True,
              help="Comma-separated: bicubic, srresnet (the pixel-loss network), srgan (the adversarial one), pulse.")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1), help="pulse samples per face.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Only the first N faces (sorted by name).")
@click.option("--generator", default=None, metavar="NAME|FILE",
              help="pulse's generator: registry name or file (default: the bundled one).")
@click.option("--sr-model", default=None, metavar="NAME|FILE",
              help="The network of the one feed-forward method listed (srresnet or srgan): registry name or file "
                   "(default: the registry's for the method and scale).")
@click.option("--resolution", default=None, type=click.IntRange(1),
              help="Evaluation size in px (default: the generator's); lets a bicubic-only run go without one.")
@click.option("--lr-kernel", default="bicubic", show_default=True, type=click.Choice(KERNELS),
              help="How the LR is made from HR: bicubic = PULSE's; box = block averages, as a mosaic; bilinear. "
                   "LR consistency is judged with it; the search explains the LR with it unless --degradation says "
                   "otherwise.")
@click.option("--jpeg", "jpeg_quality", default=None, type=click.IntRange(1, 100),
              help="Also JPEG-compress the LR at this quality, as a thumbnail or a screenshot is.")
@click.option("--degraded", is_flag=True,
              help="Make each LR as photos are instead: Real-ESRGAN's blur -> random resize -> noise -> JPEG (pulse "
                   "train-sr --degradation realesrgan's), one fixed draw per face from --seed and its position: a "
                   "deterministic degraded copy of the faces. LR consistency is still judged with --lr-kernel.")
@search_options
@click.option("--seed", default=0, show_default=True, type=int, help="pulse sample k uses seed + k.")
@device_option()
@click.option("--batch-size", default="auto", show_default=True,
              help="Faces x samples searched at once: a number, or auto (8 on a CPU; on a GPU, what fits in memory).")
@click.option("--compile", "compile_generator", is_flag=True,
              help="torch.compile the generator: faster steps after a compile of about a minute; for many faces.")
@click.option("--grid-faces", default=8, show_default=True, type=click.IntRange(0),
              help="Faces in grid.png (0: no grid).")
@verbose_option
def eval_command(data_dir, output, scale, methods, samples, limit, generator, sr_model, resolution, lr_kernel,
                 jpeg_quality, degraded, seed, device, batch_size, compile_generator, grid_faces, verbose, **search):
    """Evaluate pulse and the SR networks against bicubic on faces whose truth is known.

    \b
    Examples:
      pulse eval --data faces/ --scale 8 --out report/
      pulse eval --data faces/ --methods bicubic --resolution 128 --limit 8
      pulse eval --data faces/ --samples 4 --grid-faces 4 --device cuda
      pulse eval --data faces/ --methods bicubic,srresnet,srgan,pulse --scale 8
      pulse eval --data faces/ --lr-kernel box --jpeg 40 --eps 6e-3
      pulse eval --data faces/ --methods bicubic,srresnet --degraded

    Each HR face is brought to the generator's resolution, downscaled by SCALE with pulse's own operator,
    and super-resolved by each method. Prints a markdown table (mean ± std (median) per metric and method)
    and writes summary.md, metrics.csv (one row per output) and grid.png. LPIPS and identity need
    `pip install "pulse[eval]"`; without it they are n/a. Exit codes: 0 done; 1 some faces could not be
    read (named on stderr); 2 usage or setup error.
    """

    say = lambda message: click.echo(message, err=True)  # noqa: E731
    encoder = search.pop("encoder")
    if degraded and (lr_kernel != "bicubic" or jpeg_quality is not None):
        raise PulseError("--degraded makes the LR its own way: leave out --lr-kernel and --jpeg")
    options = given_search_options(search)
    options.setdefault("degradation", lr_kernel)  # the search explains the LR the way it was made
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    if not chosen or set(chosen) - set(METHODS):
        raise PulseError(f"--methods must list some of {', '.join(METHODS)}, got {methods!r}")
    files = find_inputs(data_dir, verbose)[:limit]
    upsampler = None
    if "pulse" in chosen:
        from ..api import Upsampler
        from ..memory import batch_size_arg

        upsampler = Upsampler(generator=generator, device=device, batch_size=batch_size_arg(batch_size),
                              compile=compile_generator, encoder=encoder)
        if resolution not in (None, upsampler.resolution):
            raise PulseError(f"--resolution {resolution} differs from the generator's {upsampler.resolution} px")
        resolution = upsampler.resolution
        options = asdict(upsampler.search_options(scale, **options))
        options.pop("frame_every")
    eps = options.pop("eps", SearchOptions.eps)
    from ..feedforward import FeedForwardUpsampler

    feedforward = {}
    networks = [m for m in FEEDFORWARD if m in chosen]
    if sr_model is not None and len(networks) != 1:
        raise PulseError("--sr-model names the network of one feed-forward method: list one of srresnet, srgan")
    for method in networks:
        feedforward[method] = network = FeedForwardUpsampler(sr_model, scale, device, method=method)
        if resolution not in (None, network.resolution):
            raise PulseError(f"{network.model.source}: makes {network.resolution} px faces, but the "
                             f"evaluation size is {resolution} px")
        resolution = network.resolution
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
    with progress_bar(len(files), "eval") as bar, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluation = evaluate(files, resolution, scale, chosen, upsampler, samples=samples, seed=seed, eps=eps,
                              feedforward=feedforward,
                              grid_faces=grid_faces, on_error=errors.append, lr_kernel=lr_kernel,
                              jpeg_quality=jpeg_quality, degraded_seed=seed if degraded else None, **options,
                              on_face=lambda name: bar.update(1, name))
    for message in dict.fromkeys(str(w.message) for w in caught):
        say(f"warning: {message}")
    for error in errors:
        say(f"error: {error}")
    if not evaluation.faces:
        say("error: no face could be evaluated")
        sys.exit(EXIT_INPUT_ERRORS)

    made = (f"degraded as Real-ESRGAN's, draws of seed {seed}" if degraded
            else lr_kernel + (f" + JPEG q{jpeg_quality}" if jpeg_quality else ""))
    caption = (f"{evaluation.faces} faces from {data_dir}, {resolution} px, x{scale} (LR {resolution // scale} px, "
               f"made {made}; consistency judged with {lr_kernel})"
               + (f", pulse: {'up to ' if options['early_stop'] else ''}{options['steps']} steps"
                  f"{' (early stop)' if options['early_stop'] else ''} from {options['init']} starts, {samples} "
                  f"sample(s), seed {seed}, operator {options['degradation']}, loss {options['loss']}" if upsampler
                  else "")
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
