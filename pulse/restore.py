"""Whole photos: find every face, super-resolve it with the search, paste it into the upscaled photo.

Each face is FFHQ-aligned at the generator's resolution and downscaled with pulse's own ``resize`` to
``resolution // scale`` px: the LR face the search must explain, made the way every LR input is made. The
result (``scale`` x the LR size) goes back through the inverse of the alignment into the photo upscaled
by the same ``scale`` (bicubic), with a feathered edge: by default only the face region the landmarks
outline, so hair, ears and background stay the photo's own. Because the search makes the face downscale to
the LR face, and the bicubic background downscales to the same photo, both agree at low resolution where
they meet; the feather hides the difference in detail.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from PIL import Image

from .align import AlignedFace, MIN_SCORE, align_faces, detection_options, paste_back, require_models, scale_quad
from .api import Result, Upsampler
from .errors import EXIT_INPUT_ERRORS, EXIT_NOT_CONSISTENT, EXIT_USAGE, PulseError, say_below_progress
from .imageio import (MAX_PIXELS, list_images, load_image, output_stems, pil_to_tensor, save_image, tensor_to_pil,
                      to_rgb, write_text_atomic)
from .resample import resize

MIN_LR_SIZE = 4  # below this an LR "face" is a few blotches and any face explains it
MASKS = ("face", "square")
MAX_OUTPUT_PIXELS = 4 * MAX_PIXELS


@dataclass
class RestoredFace:
    """One face of a restored photo: where it was, what the search was given, what it returned."""

    aligned: AlignedFace  # at the generator's resolution, cut from the photo
    lr: Image.Image  # what the search had to explain
    result: Result  # image, lr_mse, lr_psnr, success, seed
    quad_scaled: np.ndarray  # where it was pasted in the upscaled photo

    def report(self) -> dict:
        return {**self.aligned.report(), "lr_size": self.lr.width,
                "quad_scaled": np.round(self.quad_scaled, 3).tolist(), "lr_mse": self.result.lr_mse,
                "lr_psnr": round(self.result.lr_psnr, 3), "success": self.result.success, "seed": self.result.seed}


@dataclass
class RestoredPhoto:
    """A restored photo, its plain upscale (for before/after comparisons) and its faces."""

    image: Image.Image  # the photo x scale with the faces pasted in
    upscaled: Image.Image  # the same photo x scale by bicubic alone
    faces: list[RestoredFace]  # empty: no face found, ``image`` is the plain upscale


def upscale_photo(photo: Image.Image, scale: int) -> Image.Image:
    """The background: plain bicubic, the interpolating member of the family pulse downscales with."""
    return photo.resize((photo.width * scale, photo.height * scale), Image.Resampling.BICUBIC)


def lr_size_for(resolution: int, scale: int) -> int:
    """The LR face size a generator of ``resolution`` px can enlarge ``scale`` times."""
    if scale < 1:
        raise PulseError(f"scale must be a whole number >= 1, got {scale}")
    lr = resolution // scale
    if lr < MIN_LR_SIZE:
        raise PulseError(f"scale {scale} leaves {lr} px faces for the {resolution} px generator; the least is "
                         f"{MIN_LR_SIZE} px, so use a scale of at most {resolution // MIN_LR_SIZE}")
    return lr


def restore(photo: Image.Image, scale: int = 8, upsampler=None, seed: int = 0, feather: float = 0.1,
            mask: str = "face", detector: str = "hog", upsample: int = 0, min_score: float = MIN_SCORE,
            name: str = "photo", **search_options) -> RestoredPhoto:
    """Enlarge a photo ``scale`` times, replacing every detected face by a PULSE reconstruction.

    ``upsampler`` is a ``pulse.Upsampler`` (default: the bundled generator) or anything with the same
    ``resolution`` and ``run(images, scale=, samples=, seed=, **options)``. Search keywords (steps, eps,
    loss, ...) go to ``run``. ``mask``: "face" replaces the face region the landmarks outline (the photo keeps
    its hair and background), "square" the whole aligned square. Faces too small to align are skipped, and
    a photo without a face is only upscaled, each with a warning naming ``name``.
    """
    if mask not in MASKS:
        raise PulseError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
    photo = to_rgb(photo, name)
    upsampler = Upsampler() if upsampler is None else upsampler
    lr_size = lr_size_for(upsampler.resolution, scale)
    if photo.width * photo.height * scale * scale > MAX_OUTPUT_PIXELS:
        raise PulseError(f"{name}: {photo.width}x{photo.height} x{scale} = {photo.width * scale}x"
                         f"{photo.height * scale} is more than {MAX_OUTPUT_PIXELS} pixels; crop the photo "
                         "or lower the scale")
    aligned = align_faces(photo, upsampler.resolution, detector=detector, upsample=upsample, min_score=min_score,
                          name=name)
    upscaled = upscale_photo(photo, scale)
    if not aligned:
        warnings.warn(f"{name}: no face found; upscaled plainly")
        return RestoredPhoto(upscaled, upscaled, [])
    lrs = [tensor_to_pil(resize(pil_to_tensor(face.image), lr_size)) for face in aligned]
    results = upsampler.run(lrs, scale=scale, samples=1, seed=seed, **search_options)
    image, faces = upscaled, []
    for face, lr, (result,) in zip(aligned, lrs, results):
        quad = scale_quad(face.quad, scale)
        # the landmarks as fractions of the face's side (pixel centres sit half a pixel in)
        landmarks = (face.to_aligned(face.landmarks) + 0.5) / face.size if mask == "face" else None
        image = paste_back(image, result.image, quad, feather, landmarks)
        faces.append(RestoredFace(face, lr, result, quad))
    return RestoredPhoto(image, upscaled, faces)


def before_after(before: Image.Image, after: Image.Image) -> Image.Image:
    """Two equal-size pictures side by side."""
    grid = Image.new("RGB", (before.width + after.width, max(before.height, after.height)), "white")
    grid.paste(before, (0, 0))
    grid.paste(after, (before.width, 0))
    return grid


@click.command("restore")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A photo, or a folder of photos (PNG, JPEG, WebP, BMP).")
@click.option("--output", "output_dir", default="restored", show_default=True, type=click.Path(path_type=Path),
              help="Folder for the restored photos and their JSON reports.")
@click.option("--scale", default=8, show_default=True, type=click.IntRange(1),
              help="Photo enlargement; faces are searched at generator resolution // scale px.")
@click.option("--grid", is_flag=True, help="Also write <stem>_grid.png: bicubic upscale | restored.")
@click.option("--generator", default=None, help="Registry name or generator file (default: the bundled one).")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(1), help="Search steps.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the search.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--feather", default=0.1, show_default=True, type=click.FloatRange(0, 0.5),
              help="Width of the blend at the pasted region's edge, as a fraction of the face square's side.")
@click.option("--mask", default="face", show_default=True, type=click.Choice(MASKS),
              help="Region replaced: face = inside the jaw line up to the forehead (the photo keeps its hair "
                   "and background); square = the whole aligned square.")
@detection_options
def restore_command(input_path, output_dir, scale, grid, generator, steps, seed, device, feather, mask, detector,
                    upsample, min_score):
    """Enlarge whole photos, replacing each face by a PULSE reconstruction.

    \b
    Examples:
      pulse restore --input group_photo.jpg --output restored/ --scale 8
      pulse restore --input photos/ --scale 4 --grid --steps 200 --device cuda

    Each face is aligned like FFHQ, downscaled to (generator resolution // scale) px, searched, and its face
    region (--mask) pasted back with a feathered edge into the photo upscaled bicubic. The faces are invented, not recovered.
    Writes <stem>.png and <stem>.json (per face: box, landmarks, quad, LR-PSNR, success, seed); a photo
    without a detectable face is reported and written upscaled plainly. Problems are one line each on
    stderr and the batch goes on. Exit codes: 0 every face restored within eps; 1 some photo failed
    (unreadable, too large, no face); 2 usage/setup error; 3 some face did not get within eps.
    """
    try:
        files = list_images(input_path)
        upsampler = Upsampler(generator=generator, device=device)
        lr_size = lr_size_for(upsampler.resolution, scale)
        require_models(detector)
    except PulseError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)

    failed, inconsistent, started = 0, 0, time.perf_counter()
    stems = output_stems(files)
    with click.progressbar(length=len(files), label="restore", file=sys.stderr, show_pos=True,
                           item_show_func=lambda s: s) as bar:
        for path in files:
            on_step = lambda step, total: bar.update(0, f"{path.name}: step {step}/{total}")  # noqa: E731
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    restored = restore(load_image(path), scale, upsampler, seed=seed, feather=feather, mask=mask,
                                       detector=detector, upsample=upsample, min_score=min_score, name=str(path),
                                       steps=steps, on_step=on_step)
                except PulseError as err:
                    say_below_progress(f"error: {err}")
                    failed += 1
                    bar.update(1, path.name)
                    continue
            for w in caught:
                say_below_progress(f"warning: {w.message}")
            stem = stems[path]
            save_image(restored.image, output_dir / f"{stem}.png")
            if grid:
                save_image(before_after(restored.upscaled, restored.image), output_dir / f"{stem}_grid.png")
            report = {"source": str(path), "scale": scale, "lr_size": lr_size, "image": f"{stem}.png",
                      "faces": [face.report() for face in restored.faces]}
            write_text_atomic(output_dir / f"{stem}.json", json.dumps(report, indent=1) + "\n")
            failed += not restored.faces
            inconsistent += sum(not face.result.success for face in restored.faces)
            psnrs = ", ".join(f"{face.result.lr_psnr:.1f}" for face in restored.faces)
            say_below_progress(f"{path}: {len(restored.faces)} faces restored (LR-PSNR dB: {psnrs or '-'})")
            bar.update(1, path.name)
    click.echo(f"{len(files)} photos, {failed} failed, {inconsistent} faces not within eps; "
               f"{time.perf_counter() - started:.1f} s; output: {output_dir}", err=True)
    if failed:
        sys.exit(EXIT_INPUT_ERRORS)
    if inconsistent:
        sys.exit(EXIT_NOT_CONSISTENT)
