"""`pulse run`: LR faces in, super-resolved faces, a report and optional grids out."""

from __future__ import annotations

import signal
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import click
from PIL import Image

from ..errors import EXIT_INPUT_ERRORS, EXIT_NOT_CONSISTENT, Interrupted, PulseError
from ..progress import progress_bar
from .common import (
    PulseCommand,
    device_option,
    generator_option,
    given_search_options,
    method_line,
    method_option,
    network_for,
    refuse_search_options,
    say,
    say_below_progress,
    say_passed_over,
    scale_option,
    search_options,
    shard_option,
    sr_model_option,
    verbose_option,
)


def _output_names(stem: str, samples: int) -> list[str]:
    return [f"{stem}.png"] if samples == 1 else [f"{stem}_{k}.png" for k in range(samples)]


def _comparison(lr, results, scale: float, method: str):
    """One input's picture: LR (nearest-enlarged) | bicubic | each sample of the method, at the output size."""
    from ..imageio import tensor_to_pil
    from ..resample import resize
    from ..sampling import labelled_grid

    cell = results[0].image.width
    tiles = [tensor_to_pil(lr).resize((cell, cell), Image.Resampling.NEAREST), tensor_to_pil(resize(lr, cell))]
    labels = [f"LR {lr.shape[-1]} px", f"bicubic x{scale:g}"]
    labels += [method] if len(results) == 1 else [f"{method} #{r.sample}" for r in results]
    return labelled_grid(labels, [tiles + [r.image for r in results]], cell)


@click.command("run", cls=PulseCommand)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="An LR face image, or a folder of them (PNG, JPEG, WebP, BMP).")
@click.option("--output", "output_dir", default="pulse_out", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the results and report.jsonl.")
@scale_option("Output size = input size x scale.")
@click.option("--samples", default=1, show_default=True, type=int, help="Different faces per input.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Sample k of every input uses seed + k (from an encoder, sample 0 is its face: --guided-rows).")
@click.option("--batch-size", default="auto", show_default=True,
              help="Faces x samples searched at once: a number, or auto (8 on a CPU; on a GPU, what fits in memory).")
@device_option()
@method_option
@generator_option
@sr_model_option
@search_options
@click.option("--pixelated", default="auto", show_default=True, metavar="auto|N|off",
              help="Inputs that are mosaics shown at full size (pixelated, nearest-enlarged): auto = reduce an input "
                   "to one value per block when one block grid is unambiguous, search it with the box operator and "
                   "deliver at the mosaic's own size (--scale still wins); N = blocks of N px; off = never.")
@click.option("--compile", "compile_generator", is_flag=True,
              help="torch.compile the generator: faster steps after a compile of about a minute; for many faces.")
@click.option("--grid", is_flag=True,
              help="Also write grid/<name>.png per input: LR (nearest) | bicubic | the method (each sample), labelled.")
@click.option("--save-intermediate", is_flag=True, help="Also write a frame every 10 steps into intermediate/.")
@shard_option
@click.option("--overwrite", is_flag=True,
              help="Redo every input, even those the report says are done with these settings (pulse still never "
                   "writes over a file it did not make).")
@verbose_option
@click.pass_context
def run(ctx, input_path, output_dir, scale, samples, seed, batch_size, device, method, generator, sr_model,
        compile_generator,
        pixelated, grid, save_intermediate, shard, overwrite, verbose, **search):
    """Super-resolve aligned LR faces.

    \b
    Examples:
      pulse run --input lr_faces/ --scale 8
      pulse run --input face.png --output out/ --samples 4 --seed 7
      pulse run --input lr_faces/ --generator ffhq-1024 --scale 64 --device cuda
      pulse run --input lr_faces/ --scale 8 --method srresnet
      pulse run --input pixelated_face.png --pixelated auto

    Writes <name>.png (or <name>_<k>.png for samples; <name> is the input's stem, or stem.ext when
    inputs share a stem), with --grid grid/<name>.png, and report.jsonl with one line per output
    (LR MSE, LR-PSNR, success, seed, seconds, and what made it) or per failed input. Re-running skips the
    inputs finished with the same settings; other settings stop the run (exit 2) unless --overwrite. pulse never
    writes over its inputs or any file in the folder that its report does not name. One run per folder at a time.
    Exit codes: 0 all within eps; 1 some inputs failed; 2 usage/setup error; 3 some results not within eps;
    130 interrupted (rerun the same command to resume).
    """
    from ..api import COMPILE_NOTE, open_upsampler
    from ..batch import BatchJob, method_settings, parse_shard
    from ..depixelize import pixelated_mode, stream_depixelized
    from ..devices import select_device
    from ..imageio import find_images, output_stems
    from ..memory import batch_size_arg
    from ..search import SearchOptions
    from ..training import distributed

    if samples < 1:
        raise PulseError("--samples must be >= 1")
    encoder = search.pop("encoder")
    options = given_search_options(search)
    refuse_search_options(ctx, method, SEARCH_PARAMETERS)
    batch_size = batch_size_arg(batch_size)
    pixelated = pixelated_mode(pixelated)
    try:
        SearchOptions(**options)  # what was given is checked before any input is read
    except ValueError as err:
        raise PulseError(f"search options: {err}") from None
    if method == "pulse":
        options["frame_every"] = 10 if save_intermediate else 0
    else:
        options = {"eps": options.get("eps", SearchOptions.eps)}
    shard_of = parse_shard(shard) if shard else (0, 1)
    network = network_for(method, generator, sr_model)
    found = find_images(input_path)
    device = select_device(device)
    processes = distributed.start(device.type)  # torchrun: each process takes every world-th input
    if device.type == "cuda":
        device = f"cuda:{processes.local_rank}"
    upsampler = open_upsampler(method, network, device, scale, batch_size, compile_generator, encoder)
    upsampler.check_request(scale, samples, options)
    eps = upsampler.search_options(scale, **options).eps if method == "pulse" else options["eps"]
    made_with = {**method_settings(upsampler, scale, seed, samples, options), "pixelated": str(pixelated)}
    job = BatchJob(output_dir, made_with, processes=processes, shard=shard_of).open()
    with job:  # unlocked however the run ends
        files = job.inputs_here(found.images)
        if processes.is_main:
            say_passed_over(found.skipped, input_path, verbose)
        stems = output_stems(files)  # over all inputs, so every process and shard names outputs alike

        def writes_of(path: Path) -> list[str]:
            names = _output_names(stems[path], samples)
            return (names + ([f"grid/{stems[path]}.png"] if grid else [])
                    + ([f"intermediate/{Path(n).stem}" for n in names] if save_intermediate else []))

        job.plan(files, lambda path: _output_names(stems[path], samples), writes_of, overwrite)
        if processes.is_main:
            say(f"pulse run: {len(job.todo)} input(s) to do, {job.skipped} done before; x{scale:g} by "
                f"{method_line(upsampler, scale, options)} on {upsampler.device}"
                + (f"; shard {shard}" if shard else ""))
        if compile_generator and job.todo and processes.is_main:
            say(COMPILE_NOTE)

        started = time.perf_counter()
        todo = job.todo
        try:
            with _sigterm_as_ctrl_c(), \
                    progress_bar(len(todo), method, hidden=not processes.is_main) as bar, \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                on_step = lambda step, total: bar.update(0, f"step {step}/{total}")  # noqa: E731
                shown: set[str] = set()
                scale_given = ctx.get_parameter_source("scale") is click.core.ParameterSource.COMMANDLINE
                for i, results, mosaic in stream_depixelized(upsampler, [path for path, _ in todo], pixelated, scale,
                                                             scale_given, say_below_progress, verbose, samples=samples,
                                                             seed=seed, on_step=on_step, **options):
                    for message in dict.fromkeys(str(w.message) for w in caught):
                        if message not in shown:
                            say_below_progress(f"warning: {message}")
                            shown.add(message)
                    caught.clear()
                    path, input_sha = todo[i]
                    if isinstance(results, PulseError):
                        say_below_progress(f"error: {results}")
                        job.fail(path, str(results))
                    else:
                        _deliver(job, path, input_sha, results, stems[path], scale, grid, method, mosaic)
                    bar.update(1, path.name)
        except KeyboardInterrupt:
            raise Interrupted(f"finished faces are kept in {job.report_path}; rerun the same command to resume")
        except OSError as err:  # a full disk, a folder made read-only mid-run
            say_below_progress(f"error: {output_dir}: cannot write ({err.strerror or err}); finished faces are kept in "
                               f"{job.report_path}: rerun the same command to resume")
            sys.exit(EXIT_INPUT_ERRORS)

        summary = job.finish(lambda path: _output_names(stems[path], samples))
        if processes.is_main:
            say(f"{summary.processed} processed, {summary.skipped} skipped (already done), {summary.failed} failed; "
                f"{summary.outputs - summary.not_consistent}/{summary.outputs} outputs within eps={eps:g}; "
                f"{time.perf_counter() - started:.1f} s; report: {job.report_path}")
        distributed.stop(processes)
        if summary.failed:
            sys.exit(EXIT_INPUT_ERRORS)
        if summary.not_consistent:
            sys.exit(EXIT_NOT_CONSISTENT)


# the options that only steer the search: an error when given with a method that does not search
SEARCH_PARAMETERS = ("steps", "eps_margin", "loss", "learning_rate", "schedule", "noise", "trainable_noise_layers",
                     "noise_lr_scale", "tile_latent", "early_stop", "precision", "degradation", "init", "spread",
                     "guided_rows", "encoder", "compile_generator", "save_intermediate")


@contextmanager
def _sigterm_as_ctrl_c():
    """A SIGTERM (``kill``, a job scheduler) ends the run the way Ctrl-C does: finished faces kept, resume said."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:  # nohup'ed: keep ignoring
        yield
        return
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _deliver(job, path: Path, input_sha: str, results, stem: str, scale: float, grid: bool, method: str,
             mosaic) -> None:
    """Each output's report line first (so the folder always names what pulse writes), then its files. A mosaic
    was searched as its LR, with the box operator, at its own scale: its line says so."""
    from ..imageio import image_bytes

    degradation = job.made_with["search"]["degradation"] if method == "pulse" else None  # the search's operator
    if mosaic is not None:
        scale = results[0].image.width / mosaic.lr.shape[-1]
        degradation = degradation and "box"
    pixelated = None if mosaic is None else mosaic.grid.report()
    names = _output_names(stem, len(results))
    grid_name = f"grid/{stem}.png" if grid else None
    outputs, extras = [], []
    for res, name in zip(results, names):
        frames = f"intermediate/{Path(name).stem}" if res.frames else None
        outputs.append((name, image_bytes(res.image),
                        {"method": method, "sample": res.sample, "seed": res.seed, "lr_mse": res.lr_mse,
                         "lr_psnr": round(res.lr_psnr, 3), "success": res.success, "steps": res.steps,
                         "best_step": res.best_step, "seconds": round(res.seconds, 3), "grid": grid_name,
                         "frames": frames, "degradation": degradation, "pixelated": pixelated}))
        extras += [(f"{frames}/step_{10 * j:04d}.png", image_bytes(frame)) for j, frame in enumerate(res.frames)]
    if grid:
        from ..inputs import to_lr_tensor

        lr = to_lr_tensor(path, str(path)) if mosaic is None else mosaic.lr
        extras.append((grid_name, image_bytes(_comparison(lr, results, scale, method))))
    job.deliver(path, input_sha, outputs, extras)
