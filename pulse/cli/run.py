"""`pulse run`: LR faces in, super-resolved faces, a report and optional grids out."""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import click
from PIL import Image

from ..errors import EXIT_INPUT_ERRORS, EXIT_NOT_CONSISTENT, PulseError
from .common import PulseCommand, scale_option, device_option, generator_option, say, say_below_progress

REPORT_NAME = "report.jsonl"



def _output_names(stem: str, samples: int) -> list[str]:
    return [f"{stem}.png"] if samples == 1 else [f"{stem}_{k}.png" for k in range(samples)]


def _comparison(lr, results, scale: float):
    """One input's picture: LR (nearest-enlarged) | bicubic | each pulse sample, at the output size."""
    from ..imageio import tensor_to_pil
    from ..resample import resize
    from ..sampling import labelled_grid

    cell = results[0].image.width
    tiles = [tensor_to_pil(lr).resize((cell, cell), Image.Resampling.NEAREST), tensor_to_pil(resize(lr, cell))]
    labels = [f"LR {lr.shape[-1]} px", f"bicubic x{scale:g}"]
    labels += ["pulse"] if len(results) == 1 else [f"pulse #{r.sample}" for r in results]
    return labelled_grid(labels, [tiles + [r.image for r in results]], cell)


def _read_report(path: Path) -> dict[str, list[dict]]:
    """Previous report lines by input, so a resumed run keeps the numbers of the work it skips."""
    lines: dict[str, list[dict]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            lines.setdefault(entry.get("input", ""), []).append(entry)
    return lines


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
@click.option("--early-stop", is_flag=True, help="Stop a batch once every face in it is within eps.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16"]),
              help="bf16: the generator runs under autocast (faster on recent GPUs); losses stay fp32.")
@click.option("--compile", "compile_generator", is_flag=True,
              help="torch.compile the generator: faster steps after a compile of about a minute; for many faces.")
@click.option("--grid", is_flag=True,
              help="Also write grid/<name>.png per input: LR (nearest) | bicubic | pulse (each sample), labelled.")
@click.option("--save-intermediate", is_flag=True, help="Also write a frame every 10 steps into intermediate/.")
@click.option("--overwrite", is_flag=True, help="Redo inputs whose outputs already exist (default: skip them).")
def run(input_path, output_dir, scale, steps, eps, eps_margin, samples, seed, batch_size, device, generator, loss,
        learning_rate, noise, noise_layers, early_stop, precision, compile_generator, grid, save_intermediate,
        overwrite):
    """Super-resolve aligned LR faces.

    \b
    Examples:
      pulse run --input lr_faces/ --scale 8
      pulse run --input face.png --output out/ --samples 4 --seed 7
      pulse run --input lr_faces/ --generator ffhq-1024 --scale 64 --device cuda

    Writes <name>.png (or <name>_<k>.png for samples; <name> is the input's stem, or stem.ext when
    inputs share a stem), with --grid grid/<name>.png, and report.jsonl with one line per output
    (LR MSE, LR-PSNR, success, seed, seconds) or per failed input. Re-running skips finished inputs.
    Exit codes: 0 all within eps; 1 some inputs failed; 2 usage/setup error; 3 some results not within eps.
    """
    from ..api import COMPILE_NOTE, Upsampler, check_lr, output_size, to_lr_tensor
    from ..devices import select_device
    from ..imageio import list_images, output_stems, save_image, write_text_atomic
    from ..memory import batch_size_arg
    from ..training import distributed

    files = list_images(input_path)
    if samples < 1 or steps < 1:
        raise PulseError("--samples and --steps must be >= 1")
    batch_size = batch_size_arg(batch_size)
    device = select_device(device)
    processes = distributed.start(device.type)  # torchrun: each process takes every world-th input
    if device.type == "cuda":
        device = f"cuda:{processes.local_rank}"
    upsampler = Upsampler(generator=generator, device=device, batch_size=batch_size, compile=compile_generator)

    report_path = output_dir / REPORT_NAME
    previous = _read_report(report_path)
    mine: dict[str, list[dict]] = {}  # this process's new report lines, by input
    todo, skipped = [], 0
    stems = output_stems(files)  # over all inputs, so every rank names outputs alike
    for path in files[processes.rank :: processes.world]:
        names = _output_names(stems[path], samples)
        if not overwrite and all((output_dir / n).is_file() for n in names) and str(path) in previous:
            skipped += 1
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                lr = to_lr_tensor(path, str(path))
                check_lr(lr, upsampler.resolution, str(path))
                output_size(lr.shape[-1], scale, str(path))
            except PulseError as err:
                say(f"error: {err}")
                mine[str(path)] = [{"input": str(path), "status": "error", "error": str(err)}]
                continue
        for w in caught:
            say(f"warning: {w.message}")
        todo.append((path, lr))

    def write_report(entries: dict[str, list[dict]], path: Path):
        write_text_atomic(path, "".join(json.dumps(e) + "\n" for lines in entries.values() for e in lines))

    # one process: the report itself is kept current; several: each keeps its own part until the merge
    partial = report_path if processes.world == 1 else output_dir / f".{REPORT_NAME}.rank{processes.rank}"
    options = dict(steps=steps, eps=eps, eps_margin=eps_margin, noise=noise, early_stop=early_stop, precision=precision,
                   frame_every=10 if save_intermediate else 0)
    given = (("loss", loss), ("learning_rate", learning_rate), ("trainable_noise_layers", noise_layers))
    options.update({k: v for k, v in given if v is not None})
    per_call = max(1, upsampler.fit_batch_size(**options) // samples) if todo else 1
    if compile_generator and todo and processes.is_main:
        say(COMPILE_NOTE)
    started = time.perf_counter()
    with click.progressbar(length=len(todo), label="pulse", file=sys.stderr, show_pos=True,
                           item_show_func=lambda s: s, hidden=not processes.is_main) as bar:
        for start in range(0, len(todo), per_call):
            chunk = todo[start : start + per_call]
            on_step = lambda step, total: bar.update(0, f"{chunk[0][0].name}: step {step}/{total}")  # noqa: E731
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                results = upsampler.run([lr for _, lr in chunk], scale=scale, samples=samples, seed=seed,
                                        on_step=on_step, **options)
            for w in {str(w.message) for w in caught}:
                say_below_progress(f"warning: {w}")
            for (path, lr), per_sample in zip(chunk, results):
                if grid:
                    save_image(_comparison(lr, per_sample, scale), output_dir / "grid" / f"{stems[path]}.png")
                entries = []
                for res, name in zip(per_sample, _output_names(stems[path], samples)):
                    save_image(res.image, output_dir / name)
                    for j, frame in enumerate(res.frames):
                        save_image(frame, output_dir / "intermediate" / Path(name).stem / f"step_{10 * j:04d}.png")
                    entries.append({"input": str(path), "output": name, "status": "ok", "sample": res.sample,
                                    "seed": res.seed, "lr_mse": res.lr_mse, "lr_psnr": round(res.lr_psnr, 3),
                                    "success": res.success, "steps": res.steps, "best_step": res.best_step,
                                    "seconds": round(res.seconds, 3)})
                mine[str(path)] = entries
            write_report({**previous, **mine} if processes.world == 1 else mine, partial)
            bar.update(len(chunk))

    report = dict(previous)
    for part in distributed.gather(mine, processes):
        report.update(part)
    if processes.is_main:
        write_report(report, report_path)
    distributed.barrier(processes)
    if processes.world > 1:
        partial.unlink(missing_ok=True)
    counts = [sum(c) for c in zip(*distributed.gather((len(todo), skipped), processes))]
    distributed.stop(processes)

    inputs = {str(f) for f in files}
    lines = [e for entries in report.values() for e in entries if e["input"] in inputs]
    failed = sum(e["status"] == "error" for e in lines)
    ok_lines = [e for e in lines if e["status"] == "ok"]
    below = sum(not e["success"] for e in ok_lines)
    if processes.is_main:
        say(f"{counts[0]} processed, {counts[1]} skipped (already done), {failed} failed; "
             f"{len(ok_lines) - below}/{len(ok_lines)} outputs within eps={eps:g}; "
             f"{time.perf_counter() - started:.1f} s; report: {report_path}")
    if failed:
        sys.exit(EXIT_INPUT_ERRORS)
    if below:
        sys.exit(EXIT_NOT_CONSISTENT)
