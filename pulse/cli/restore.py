"""`pulse restore`: whole photos in, photos with every face super-resolved and pasted back out."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..api import open_upsampler
from ..errors import EXIT_INPUT_ERRORS, EXIT_NOT_CONSISTENT
from ..faces.align import parse_face_box
from ..faces.detect import require_models
from ..faces.restore import MASKS, before_after, lr_size_for, restore
from ..imageio import load_image, output_stems, save_image, write_text_atomic
from ..output_folder import OutputFolder
from .align import detection_options
from .common import (
    PulseCommand,
    device_option,
    find_inputs,
    for_each_input,
    generator_option,
    method_option,
    refuse_search_options,
    say_below_progress,
    scale_option,
    verbose_option,
)


@click.command("restore", cls=PulseCommand)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A photo, or a folder of photos (PNG, JPEG, WebP, BMP).")
@click.option("--output", "output_dir", default="restored", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the restored photos and their JSON reports.")
@scale_option("Photo enlargement (a whole number); faces are searched at generator resolution // scale px.",
              whole=True, minimum=1)
@click.option("--grid", is_flag=True, help="Also write <stem>_grid.png: bicubic upscale | restored.")
@method_option
@generator_option
@click.option("--steps", default=100, show_default=True, type=click.IntRange(1), help="Search steps.")
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
@verbose_option
@click.pass_context
def restore_command(ctx, input_path, output_dir, scale, grid, method, generator, steps, seed, device, feather, mask,
                    face_boxes, detector, upsample, min_score, verbose):
    """Enlarge whole photos, replacing each face by a PULSE (or srgan) reconstruction.

    \b
    Examples:
      pulse restore --input group_photo.jpg --output restored/ --scale 8
      pulse restore --input photos/ --scale 4 --grid --steps 200 --device cuda
      pulse restore --input group_photo.jpg --scale 8 --method srgan
      pulse restore --input pixelated.png --scale 8 --face-box 140,60,120,150

    Each face is aligned like FFHQ, downscaled to (generator resolution // scale) px, searched (or, with
    --method srgan, enlarged by the feed-forward network), and its face region (--mask) pasted back with a feathered edge into the photo upscaled bicubic. The faces are invented, not recovered.
    Writes <stem>.png and <stem>.json (per face: box, landmarks, quad, LR-PSNR, success, seed); a photo
    without a detectable face is reported and written upscaled plainly. report.jsonl names every file pulse
    wrote, and pulse never writes over a file it does not name (that photo fails). Problems are one line each on
    stderr and the batch goes on. Exit codes: 0 every face restored within eps; 1 some photo failed
    (unreadable, too large, no face); 2 usage/setup error; 3 some face did not get within eps.
    """
    refuse_search_options(ctx, method, ("steps",))
    boxes = [parse_face_box(text) for text in face_boxes]
    files = find_inputs(input_path, verbose)
    upsampler = open_upsampler(method, generator, device, scale)
    options = {"steps": steps} if method == "pulse" else {}
    lr_size = lr_size_for(upsampler.resolution, scale)
    if not boxes:  # faces given by their boxes need no detector
        require_models(detector)
    with OutputFolder(output_dir).open() as folder:  # locked; pulse writes only over what its report names
        files = folder.not_ours(files)
        stems = output_stems(files)
        no_face, inconsistent, started = 0, 0, time.perf_counter()

        def restore_one(path: Path, on_step) -> None:
            nonlocal no_face, inconsistent
            stem = stems[path]
            folder.claim(path, [f"{stem}.png", f"{stem}.json"] + ([f"{stem}_grid.png"] if grid else []))
            restored = restore(load_image(path), scale, upsampler, seed=seed, feather=feather, mask=mask,
                               detector=detector, upsample=upsample, min_score=min_score, name=str(path),
                               face_boxes=boxes, on_step=on_step, **options)
            save_image(restored.image, output_dir / f"{stem}.png")
            if grid:
                save_image(before_after(restored.upscaled, restored.image), output_dir / f"{stem}_grid.png")
            report = {"source": str(path), "method": method, "scale": scale, "lr_size": lr_size,
                      "image": f"{stem}.png", "faces": [face.report() for face in restored.faces]}
            write_text_atomic(output_dir / f"{stem}.json", json.dumps(report, indent=1) + "\n")
            no_face += not restored.faces
            inconsistent += sum(not face.result.success for face in restored.faces)
            psnrs = ", ".join(f"{face.result.lr_psnr:.1f}" for face in restored.faces)
            say_below_progress(f"{path}: {len(restored.faces)} faces restored (LR-PSNR dB: {psnrs or '-'})")

        failed = for_each_input(files, "restore", restore_one) + no_face
        folder.compact()
    click.echo(f"{len(files)} photos, {failed} failed, {inconsistent} faces not within eps; "
               f"{time.perf_counter() - started:.1f} s; output: {output_dir}", err=True)
    if failed:
        sys.exit(EXIT_INPUT_ERRORS)
    if inconsistent:
        sys.exit(EXIT_NOT_CONSISTENT)
