"""`pulse restore`: whole photos in, photos with every face super-resolved and pasted back out."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..api import open_upsampler
from ..batch import BatchJob, method_settings, parse_shard
from ..errors import EXIT_INPUT_ERRORS, EXIT_NOT_CONSISTENT
from ..faces.align import parse_face_box
from ..faces.detect import require_models
from ..faces.restore import MASKS, before_after, lr_size_for, restore
from ..imageio import image_bytes, load_image, output_stems
from .align import detection_options
from .common import (
    PulseCommand,
    device_option,
    find_inputs,
    for_each_input,
    generator_option,
    given_search_options,
    method_line,
    method_option,
    network_for,
    refuse_search_options,
    say,
    say_below_progress,
    scale_option,
    search_options,
    shard_option,
    sr_model_option,
    verbose_option,
)


@click.command("restore", cls=PulseCommand)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A photo, or a folder of photos (PNG, JPEG, WebP, BMP).")
@click.option("--output", "output_dir", default="restored", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the restored photos and their JSON reports.")
@scale_option("Photo enlargement (a whole number); faces are searched at generator resolution // scale px.",
              whole=True, minimum=1)
@click.option("--grid", is_flag=True, help="Also write grid/<stem>.png: bicubic upscale | restored.")
@method_option
@generator_option
@sr_model_option
@search_options
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the search.")
@device_option()
@click.option("--feather", default=0.1, show_default=True, type=click.FloatRange(0, 0.5),
              help="Width of the blend at the pasted region's edge, as a fraction of the face square's side.")
@click.option("--mask", default="face", show_default=True, type=click.Choice(MASKS),
              help="Region replaced: face = inside the jaw line up to the forehead (the photo keeps its hair "
                   "and background); square = the whole aligned square.")
@click.option("--face-box", "face_boxes", multiple=True, metavar="X,Y,W,H",
              help="A face to restore, by its box in photo pixels (left, top, width, height; brows to chin, cheek to "
                   "cheek), for one that detection cannot find, e.g. a pixelated face; repeat for several. Replaces "
                   "detection: aligned upright by the box, the whole square is pasted back.")
@detection_options
@shard_option
@click.option("--overwrite", is_flag=True,
              help="Redo every photo, even those the report says are done with these settings.")
@verbose_option
@click.pass_context
def restore_command(ctx, input_path, output_dir, scale, grid, method, generator, sr_model, seed, device, feather, mask,
                    face_boxes, detector, upsample, min_score, shard, overwrite, verbose, **search):
    """Enlarge whole photos, replacing each face by one that pulse or an SR network makes.

    \b
    Examples:
      pulse restore --input group_photo.jpg --output restored/ --scale 8
      pulse restore --input photos/ --scale 4 --grid --steps 200 --device cuda
      pulse restore --input group_photo.jpg --scale 8 --method srresnet
      pulse restore --input pixelated.png --scale 8 --face-box 140,60,120,150

    Each face is aligned like FFHQ, downscaled to (generator resolution // scale) px, searched (or, with
    --method srresnet or srgan, enlarged by a feed-forward network), and its face region (--mask) pasted back
    with a feathered edge into the photo upscaled bicubic. The faces are invented, not recovered.
    Writes <stem>.png and <stem>.json (per face: box, landmarks, quad, LR-PSNR, success, seed), with --grid
    grid/<stem>.png; a photo without a detectable face is reported and written upscaled plainly. report.jsonl
    names every file pulse wrote, and pulse never writes over a file it does not name. Re-running skips the photos
    finished with the same settings (other settings stop the run unless --overwrite). Problems are one line each on
    stderr and the batch goes on. Exit codes: 0 every face restored within eps; 1 some photo failed
    (unreadable, too large, no face); 2 usage/setup error; 3 some face did not get within eps.
    """
    encoder = search.pop("encoder")
    options = given_search_options(search)
    refuse_search_options(ctx, method, set(options) - {"eps"} | ({"encoder"} if encoder else set()))
    shard_of = parse_shard(shard) if shard else (0, 1)
    boxes = [parse_face_box(text) for text in face_boxes]
    files = find_inputs(input_path, verbose)
    upsampler = open_upsampler(method, network_for(method, generator, sr_model), device, scale, encoder=encoder)
    upsampler.check_request(scale, 1, options)
    lr_size = lr_size_for(upsampler.resolution, scale)
    if not boxes:  # faces given by their boxes need no detector
        require_models(detector)
    made_with = {**method_settings(upsampler, scale, seed, 1, options), "command": "restore", "feather": feather,
                 "mask": mask, "detector": detector, "upsample": upsample, "min_score": min_score,
                 "face_boxes": [list(box) for box in boxes]}
    with BatchJob(output_dir, made_with, shard=shard_of).open() as job:  # locked; writes only what it names
        files = job.inputs_here(files)
        stems = output_stems(files)
        outputs_of = lambda path: [f"{stems[path]}.png", f"{stems[path]}.json"]  # noqa: E731
        job.plan(files, outputs_of, lambda path: outputs_of(path) + ([f"grid/{stems[path]}.png"] if grid else []),
                 overwrite)
        started = time.perf_counter()
        todo = dict(job.todo)
        say(f"pulse restore: {len(todo)} photo(s) to do, {job.skipped} done before; faces x{scale:g} by "
            f"{method_line(upsampler, scale, options)} on {upsampler.device}")

        def restore_one(path: Path, on_step) -> None:
            stem = stems[path]
            restored = restore(load_image(path), scale, upsampler, seed=seed, feather=feather, mask=mask,
                               detector=detector, upsample=upsample, min_score=min_score, name=str(path),
                               face_boxes=boxes, on_step=on_step, **options)
            report = {"source": str(path), "method": method, "scale": scale, "lr_size": lr_size,
                      "image": f"{stem}.png", "faces": [face.report() for face in restored.faces]}
            within = sum(face.result.success for face in restored.faces)
            fields = {"method": method, "faces": len(restored.faces), "faces_within_eps": within,
                      "success": within == len(restored.faces) if restored.faces else None,
                      "grid": f"grid/{stem}.png" if grid else None}
            extras = [(fields["grid"], image_bytes(before_after(restored.upscaled, restored.image)))] if grid else []
            job.deliver(path, todo[path], [(f"{stem}.png", image_bytes(restored.image), fields),
                                           (f"{stem}.json", (json.dumps(report, indent=1) + "\n").encode(), fields)],
                        extras)
            psnrs = ", ".join(f"{face.result.lr_psnr:.1f}" for face in restored.faces)
            say_below_progress(f"{path}: {len(restored.faces)} faces restored (LR-PSNR dB: {psnrs or '-'})")

        for_each_input(list(todo), "restore", restore_one, lambda path, err: job.fail(path, str(err)))
        summary = job.finish(outputs_of)
    photos = [line for line in job.delivered if line["output"].endswith(".png")]  # this batch's, this run's or before
    failed = summary.failed + sum(line["faces"] == 0 for line in photos)
    inconsistent = sum(line["faces"] - line["faces_within_eps"] for line in photos)
    click.echo(f"{summary.processed} photos, {summary.skipped} skipped (already done), {failed} failed, "
               f"{inconsistent} faces not within eps; {time.perf_counter() - started:.1f} s; output: {output_dir}",
               err=True)
    if failed:
        sys.exit(EXIT_INPUT_ERRORS)
    if inconsistent:
        sys.exit(EXIT_NOT_CONSISTENT)
