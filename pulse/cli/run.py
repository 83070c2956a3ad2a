"""`pulse run`: LR faces in, super-resolved faces, a report and optional grids out."""

from __future__ import annotations

import hashlib
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from PIL import Image

from ..errors import EXIT_INPUT_ERRORS, EXIT_NOT_CONSISTENT, Interrupted, PulseError
from .common import (
    PulseCommand,
    device_option,
    generator_option,
    method_option,
    refuse_search_options,
    say,
    say_below_progress,
    say_passed_over,
    scale_option,
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
@click.option("--steps", default=100, show_default=True, type=int, help="Search steps per batch.")
@click.option("--eps", default=2e-3, show_default=True, type=float,
              help="Success threshold on the LR mean squared error (images in [0, 1]).")
@click.option("--eps-margin", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="The loss aims at (1 - margin) x eps so delivered images land within eps; 0 = reference PULSE.")
@click.option("--samples", default=1, show_default=True, type=int, help="Different faces per input.")
@click.option("--seed", default=0, show_default=True, type=int, help="Sample k of every input uses seed + k.")
@click.option("--batch-size", default="auto", show_default=True,
              help="Faces x samples searched at once: a number, or auto (8 on a CPU; on a GPU, what fits in memory).")
@device_option()
@method_option
@generator_option
@click.option("--loss", default=None, help="Weighted loss terms: L2, L1, GEOCROSS [default: the generator's "
              "recommended, else 100*L2+0.05*GEOCROSS].")
@click.option("--learning-rate", default=None, type=click.FloatRange(0, min_open=True),
              help="Peak Adam learning rate of the search's one-cycle schedule [default: the generator's "
                   "recommended, else 0.4].")
@click.option("--noise", default="trainable", show_default=True, type=click.Choice(["trainable", "fixed", "zero"]),
              help="Noise maps: the coarsest --noise-layers optimised with the latent (trainable), kept as drawn "
                   "from the seed (fixed), or all zero.")
@click.option("--noise-layers", default=None, type=click.IntRange(0),
              help="How many noise maps (coarsest first) the search may change [default: the generator's "
                   "recommended, else 5].")
@click.option("--degradation", default=None, type=click.Choice(["bicubic", "box", "bilinear"]),
              help="How the LR inputs were made: the downscale of the search's consistency loss and eps check. "
                   "bicubic = PULSE's (antialiased); box = block averages (mosaics); bilinear = antialiased "
                   "triangle [default: bicubic].")
@click.option("--pixelated", default="auto", show_default=True, metavar="auto|N|off",
              help="Inputs that are mosaics shown at full size (pixelated, nearest-enlarged): auto = reduce an input "
                   "to one value per block when one block grid is unambiguous, search it with the box operator and "
                   "deliver at the mosaic's own size (--scale still wins); N = blocks of N px; off = never.")
@click.option("--early-stop", is_flag=True, help="Stop a batch once every face in it is within eps.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16"]),
              help="bf16: the generator runs under autocast (faster on recent GPUs); losses stay fp32.")
@click.option("--compile", "compile_generator", is_flag=True,
              help="torch.compile the generator: faster steps after a compile of about a minute; for many faces.")
@click.option("--grid", is_flag=True,
              help="Also write grid/<name>.png per input: LR (nearest) | bicubic | the method (each sample), labelled.")
@click.option("--save-intermediate", is_flag=True, help="Also write a frame every 10 steps into intermediate/.")
@click.option("--overwrite", is_flag=True,
              help="Redo every input, even those the report says are done with these settings (pulse still never "
                   "writes over a file it did not make).")
@verbose_option
@click.pass_context
def run(ctx, input_path, output_dir, scale, steps, eps, eps_margin, samples, seed, batch_size, device, method, generator,
        loss, learning_rate, noise, noise_layers, degradation, pixelated, early_stop, precision, compile_generator, grid,
        save_intermediate, overwrite, verbose):
    """Super-resolve aligned LR faces.

    \b
    Examples:
      pulse run --input lr_faces/ --scale 8
      pulse run --input face.png --output out/ --samples 4 --seed 7
      pulse run --input lr_faces/ --generator ffhq-1024 --scale 64 --device cuda
      pulse run --input lr_faces/ --scale 8 --method srgan
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
    from ..depixelize import pixelated_mode, stream_depixelized
    from ..devices import select_device
    from ..imageio import find_images, output_stems
    from ..memory import batch_size_arg
    from ..search import SearchOptions
    from ..training import distributed

    if samples < 1 or steps < 1:
        raise PulseError("--samples and --steps must be >= 1")
    refuse_search_options(ctx, method, SEARCH_PARAMETERS)
    batch_size = batch_size_arg(batch_size)
    pixelated = pixelated_mode(pixelated)
    options = dict(steps=steps, eps=eps, eps_margin=eps_margin, noise=noise, early_stop=early_stop, precision=precision,
                   frame_every=10 if save_intermediate else 0)
    given = (("loss", loss), ("learning_rate", learning_rate), ("trainable_noise_layers", noise_layers),
             ("degradation", degradation))
    options.update({k: v for k, v in given if v is not None})
    try:
        SearchOptions(**options)  # what was given is checked before any input is read
    except ValueError as err:
        raise PulseError(f"search options: {err}") from None
    if method != "pulse":
        options = dict(eps=eps)
    found = find_images(input_path)
    device = select_device(device)
    processes = distributed.start(device.type)  # torchrun: each process takes every world-th input
    if device.type == "cuda":
        device = f"cuda:{processes.local_rank}"
    upsampler = open_upsampler(method, generator, device, scale, batch_size, compile_generator)
    if method != "pulse":
        upsampler.check_request(scale, samples, {})
    folder = _open_folder(output_dir, processes)
    with folder:  # unlocked however the run ends
        made_with = {**_made_with(upsampler, scale, seed, samples, options), "pixelated": str(pixelated)}

        files = folder.not_ours(found.images)
        if processes.is_main:
            say_passed_over(found.skipped, input_path, verbose)
        stems = output_stems(files)  # over all inputs, so every rank names outputs alike
        plan = _plan(files[processes.rank :: processes.world], stems, folder, made_with, samples, grid, save_intermediate,
                     overwrite, {f.resolve() for f in files})
        if compile_generator and plan.todo and processes.is_main:
            say(COMPILE_NOTE)

        started, failed_now = time.perf_counter(), 0
        todo = plan.todo
        try:
            with _sigterm_as_ctrl_c(), \
                    click.progressbar(length=len(todo), label=method, file=sys.stderr, show_pos=True,
                                      item_show_func=lambda s: s, hidden=not processes.is_main) as bar, \
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
                    source = str(path.resolve())
                    if isinstance(results, PulseError):
                        say_below_progress(f"error: {results}")
                        folder.append({"input": str(path), "source": source, "status": "error", "error": str(results)})
                        failed_now += 1
                    else:
                        _deliver(folder, path, source, input_sha, results, stems[path], scale, made_with, grid, method,
                                 mosaic)
                    bar.update(1, path.name)
        except KeyboardInterrupt:
            raise Interrupted(f"finished faces are kept in {folder.report_path}; rerun the same command to resume")
        except OSError as err:  # a full disk, a folder made read-only mid-run
            say_below_progress(f"error: {output_dir}: cannot write ({err.strerror or err}); finished faces are kept in "
                               f"{folder.report_path}: rerun the same command to resume")
            sys.exit(EXIT_INPUT_ERRORS)

        distributed.barrier(processes)
        if processes.is_main:
            folder.compact()
        distributed.barrier(processes)
        if not processes.is_main:
            folder.reload()  # every process decides the exit code from the whole report
        counts = [sum(c) for c in zip(*distributed.gather((len(todo) - failed_now, plan.skipped), processes))]

        expected = {(str(f.resolve()), name) for f in files for name in _output_names(stems[f], samples)}
        sources = {source for source, _ in expected}
        failed = sum(e["status"] == "error" and e.get("source") in sources for e in folder.lines)
        ok_lines = [e for e in folder.lines if e["status"] == "ok" and (e.get("source"), e["output"]) in expected]
        below = sum(not e["success"] for e in ok_lines)
        if processes.is_main:
            say(f"{counts[0]} processed, {counts[1]} skipped (already done), {failed} failed; "
                f"{len(ok_lines) - below}/{len(ok_lines)} outputs within eps={eps:g}; "
                f"{time.perf_counter() - started:.1f} s; report: {folder.report_path}")
        distributed.barrier(processes)  # the summary is out before any process exits
        distributed.stop(processes)
        if failed:
            sys.exit(EXIT_INPUT_ERRORS)
        if below:
            sys.exit(EXIT_NOT_CONSISTENT)


def _open_folder(output_dir: Path, processes):
    """The main process locks and compacts the folder first; the others read it after (or share its error)."""
    from ..output_folder import OutputFolder
    from ..training import distributed

    problem = None
    if processes.is_main:
        try:
            folder = OutputFolder(output_dir).open()
            folder.compact()
        except PulseError as err:
            problem = str(err)
    problem = distributed.gather(problem, processes)[0]
    if problem:
        raise PulseError(problem)
    return folder if processes.is_main else OutputFolder(output_dir).open(lock=False)


def _made_with(upsampler, scale: float, seed: int, samples: int, options: dict) -> dict:
    """Everything that decides an output's pixels, as the report records it (a rerun compares it)."""
    from dataclasses import asdict

    from ..output_folder import file_sha256

    source = Path(upsampler.model.source)
    sha256 = file_sha256(source) if source.is_file() else str(source)
    if upsampler.method != "pulse":  # deterministic: the network and the scale decide the pixels
        return {"method": upsampler.method, "model_sha256": sha256, "scale": scale, "eps": options["eps"]}
    search = asdict(upsampler.search_options(**options))
    search.pop("frame_every")  # intermediate frames are extra files, not a different result
    return {"method": "pulse", "generator_sha256": sha256, "scale": scale, "seed": seed, "samples": samples,
            "search": search}


# the options that only steer the search: an error when given with a method that does not search
SEARCH_PARAMETERS = ("steps", "eps_margin", "loss", "learning_rate", "noise", "noise_layers", "degradation", "early_stop",
                     "precision", "compile_generator", "save_intermediate")


@dataclass
class _Plan:
    todo: list  # (input path, its content sha256) still to search
    skipped: int  # finished before with the same settings


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


def _plan(files, stems, folder, made_with, samples, grid, save_intermediate, overwrite, inputs) -> _Plan:
    """Which inputs are done, which to (re)do; stops before any search if an output would land on an input or
    on a file pulse did not make, or if finished work was made with other settings (unless --overwrite)."""
    from ..output_folder import file_sha256

    todo, skipped, refused, differ = [], 0, [], {}
    owned, done = folder.owned(), folder.finished()
    for path in files:
        input_sha = file_sha256(path) if path.is_file() else ""
        names = _output_names(stems[path], samples)
        finished = done.get(str(path.resolve()), {})
        if not overwrite and finished and set(names) <= set(finished):
            previous = finished[names[0]]
            if previous.get("input_sha256") != input_sha:
                pass  # the input changed since: a new face, searched again
            elif previous.get("made_with") == made_with:
                skipped += 1
                continue
            else:
                for key, (was, now) in _differences(previous.get("made_with"), made_with).items():
                    differ.setdefault(key, (was, now))
        writes = names + ([f"grid/{stems[path]}.png"] if grid else [])
        writes += [f"intermediate/{Path(n).stem}" for n in names] if save_intermediate else []
        for name in writes:
            target = folder.path / name
            if target.resolve() in inputs:
                refused.append(f"{target} (an input)")
            elif (target.exists() or target.is_symlink()) and name not in owned:
                refused.append(f"{target} (not made by pulse: {folder.report_path.name} does not name it)")
        todo.append((path, input_sha))
    if refused:
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        raise PulseError(f"refusing to write over {', '.join(refused[:3])}{more}; choose another --output")
    if differ:
        said = "; ".join(f"{key} {was} -> {now}" for key, (was, now) in differ.items())
        raise PulseError(f"{folder.report_path}: finished faces were made with other settings ({said}); rerun with "
                         "the same settings, choose another --output, or add --overwrite to redo them")
    return _Plan(todo, skipped)


def _differences(was: dict | None, now: dict) -> dict[str, tuple]:
    """Setting -> (recorded, asked) for each that differs; 'search.steps' style keys."""
    if was is None:
        return {"settings": ("not recorded (an older pulse)", "recorded")}
    flat_was, flat_now = _flatten(was), _flatten(now)
    return {key: (flat_was.get(key), flat_now.get(key)) for key in flat_now.keys() | flat_was.keys()
            if flat_was.get(key) != flat_now.get(key)}


def _flatten(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _deliver(folder, path: Path, source: str, input_sha: str, results, stem: str, scale: float, made_with: dict,
             grid: bool, method: str, mosaic) -> None:
    """Each output's report line first (so the folder always names what pulse writes), then its file. A mosaic
    was searched as its LR, with the box operator, at its own scale: its line says so."""
    from ..imageio import image_bytes

    degradation = made_with["search"]["degradation"] if method == "pulse" else None  # the operator the search used
    if mosaic is not None:
        scale = results[0].image.width / mosaic.lr.shape[-1]
        degradation = degradation and "box"
    pixelated = None if mosaic is None else mosaic.grid.report()

    names = _output_names(stem, len(results))
    grid_name = f"grid/{stem}.png" if grid else None
    for res, name in zip(results, names):
        data = image_bytes(res.image)
        frames = f"intermediate/{Path(name).stem}" if res.frames else None
        folder.append({"input": str(path), "source": source, "input_sha256": input_sha, "output": name,
                       "status": "ok", "method": method, "sample": res.sample, "seed": res.seed, "lr_mse": res.lr_mse,
                       "lr_psnr": round(res.lr_psnr, 3), "success": res.success, "steps": res.steps,
                       "best_step": res.best_step, "seconds": round(res.seconds, 3), "sha256": hashlib.sha256(data).hexdigest(),
                       "grid": grid_name, "frames": frames, "degradation": degradation, "pixelated": pixelated,
                       "made_with": made_with})
        for j, frame in enumerate(res.frames):
            folder.write_file(f"{frames}/step_{10 * j:04d}.png", image_bytes(frame))
        folder.write_file(name, data)
    if grid:
        from ..api import to_lr_tensor

        lr = to_lr_tensor(path, str(path)) if mosaic is None else mosaic.lr
        folder.write_file(grid_name, image_bytes(_comparison(lr, results, scale, method)))
