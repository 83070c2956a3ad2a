"""Reading, validating, converting and atomically writing images.

Every problem with an input becomes a ``PulseError`` whose message names the input and the problem in one
line, so a batch can report it and go on. Conversions that lose information (alpha, 16-bit, greyscale) warn.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import PulseError
from .files import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
ACCEPTED = "PNG, JPEG, WebP, BMP"
MAX_PIXELS = 64_000_000  # refuse decompression bombs well before they exhaust memory


@dataclass
class FoundImages:
    """The images a path names, and what in a folder was passed over and why (each a path and a reason)."""

    images: list[Path]
    skipped: list[tuple[Path, str]]


def find_images(path) -> FoundImages:
    """A file, or the images directly inside a folder (sorted; hidden files and subfolders passed over quietly,
    other files that are not accepted images listed with the reason); none is an error."""
    path = Path(path)
    if path.is_file():
        return FoundImages([path], [])
    if path.is_symlink() and not path.exists():
        raise PulseError(f"{path}: broken symbolic link (or a link loop)")
    if not path.is_dir():
        raise PulseError(f"{path}: no such file or folder")
    images, skipped = [], []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and not entry.exists():
            skipped.append((entry, "broken symbolic link (or a link loop)"))
        elif entry.is_dir():
            continue  # folders are not searched (an output folder may sit inside the input folder)
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((entry, f"not an accepted image type ({entry.suffix.lower() or 'no suffix'})"))
        elif not entry.is_file():
            skipped.append((entry, "not a regular file"))
        else:
            images.append(entry)
    if not images:
        raise PulseError(f"{path}: no images ({ACCEPTED}) in this folder")
    return FoundImages(images, skipped)


def list_images(path) -> list[Path]:
    """The images a path names (``find_images``), without the report of what was skipped."""
    return find_images(path).images


def output_stems(paths) -> dict[Path, str]:
    """A distinct output name per input: the stem, or stem.ext where stems clash (face.png and face.jpg)."""
    paths = list(paths)
    counts = Counter(p.stem for p in paths)  # linear: folders may hold many thousands of faces
    return {p: p.name if counts[p.stem] > 1 else p.stem for p in paths}


def to_rgb(img: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (RGB returned as is); alpha is composited on white, with a warning."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        warnings.warn(f"{name}: {img.mode} image reduced to 8 bits")
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") and arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255 + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        warnings.warn(f"{name}: alpha channel composited on white")
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    elif img.mode in ("L", "1"):
        warnings.warn(f"{name}: greyscale image replicated to RGB")
    return img.convert("RGB")


def load_image(path, check_size: Callable[[int, int], None] | None = None) -> Image.Image:
    """Open an image file as 8-bit RGB with EXIF orientation applied, or raise PulseError naming the file.

    ``check_size(width, height)`` runs on the header's size, before any pixel is decoded: a caller that will
    refuse a large image refuses it without paying for its decoding.
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise PulseError(f"{name}: file not found")
    if path.stat().st_size == 0:
        raise PulseError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise PulseError(f"{name}: {img.width}x{img.height} is too large (limit {MAX_PIXELS} pixels: decompression bomb guard)")
                if getattr(img, "n_frames", 1) > 1:
                    raise PulseError(f"{name}: animated or multi-frame image ({img.n_frames} frames); give one frame")
                if check_size is not None:
                    check_size(img.width, img.height)
                if not img.mode.startswith("I") and any(";16" in str(tile.args) for tile in img.tile):
                    warnings.warn(f"{name}: 16-bit image reduced to 8 bits")  # Pillow decodes it as 8-bit RGB
                img.load()
                img = ImageOps.exif_transpose(img)
    except PulseError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PulseError(f"{name}: refused as a decompression bomb (too many pixels)")
    except Image.UnidentifiedImageError:
        raise PulseError(f"{name}: not a readable image: pulse reads PNG, JPEG, WebP and BMP files") from None
    except Exception:  # Pillow raises many types for corrupt data
        raise PulseError(f"{name}: not a readable image: its data is damaged or cut short") from None
    return to_rgb(img, name)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float() / 255


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> RGB PIL image (rounded, clamped)."""
    arr = (t.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def image_bytes(img: Image.Image, suffix: str = ".png") -> bytes:
    """The encoded file, for writers that record its hash before the file lands."""
    buffer = io.BytesIO()
    img.save(buffer, format=Image.registered_extensions().get(suffix.lower(), "PNG"))
    return buffer.getvalue()


def save_image(img: Image.Image, path) -> Path:
    """Write atomically: a temp file in the same folder, then rename. Never leaves a partial image."""
    with atomic_path(path) as tmp:
        img.save(tmp, format=Image.registered_extensions().get(Path(path).suffix.lower(), "PNG"))
    return Path(path)


def write_text_atomic(path, text: str) -> Path:
    """Atomic text write, for reports and JSON next to images."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def quantize(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels, as the saved PNG will be."""
    return torch.round(image.clamp(0, 1) * 255) / 255
