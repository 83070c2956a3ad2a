"""Training faces: find them in folders and zip shards, decode them to uint8 at one size, stream batches.

Shards (stored zips of ``<prefix>_<id>.jpg``) are read in place with ``zipfile``, never extracted. Every
image is decoded to RGB, centre-cropped to a square if it is not one, and resized to the training resolution,
so mixed sizes and modes are fine; what was converted is counted and reported, not warned about per file.
Corrupt images are skipped with a count. A rank's share is decoded once into memory when it fits the cache
budget (the usual case: 35k faces at 128 px are 1.7 GB); otherwise batches are decoded on the fly.

The order of images is a pure function of (seed, rank, epoch), so a data position is two integers and a
resumed run sees exactly the images an uninterrupted one would.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps

from ..errors import PulseError
from ..imageio import IMAGE_SUFFIXES, MAX_PIXELS, to_rgb

ZIP_SUFFIX = ".zip"


@dataclass(frozen=True)
class ImageSource:
    """One image: a file on disk, or a member of a zip shard."""

    container: str  # the file, or the zip
    member: str = ""  # the name inside the zip; empty for plain files

    def __str__(self):
        return f"{self.container}:{self.member}" if self.member else self.container


@dataclass
class DecodeCounts:
    """What decoding had to do; reported in one line so odd inputs are visible without per-file noise."""

    corrupt: int = 0
    resized: int = 0
    cropped: int = 0
    converted: int = 0
    first_corrupt: str = ""

    def add(self, changes: tuple[str, ...], source: ImageSource):
        for change in changes:
            setattr(self, change, getattr(self, change) + 1)
        if "corrupt" in changes and not self.first_corrupt:
            self.first_corrupt = str(source)

    def summary(self) -> str:
        parts = [f"{self.corrupt} corrupt skipped" + (f" (first: {self.first_corrupt})" if self.corrupt else "")]
        parts += [f"{n} {what}" for n, what in ((self.resized, "resized"), (self.cropped, "centre-cropped"),
                                               (self.converted, "converted to RGB")) if n]
        return ", ".join(parts)


def _zip_members(path: Path) -> list[ImageSource]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise PulseError(f"{path}: not a readable zip shard ({err})")
    return [ImageSource(str(path), name) for name in sorted(names)
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not Path(name).name.startswith(".")]


def find_images(paths) -> list[ImageSource]:
    """Every image under the given folders (recursive), zip shards, or image files, in a stable order."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    sources: list[ImageSource] = []
    for path in map(Path, paths):
        if path.is_dir():
            try:
                files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            except OSError as err:
                raise PulseError(f"{path}: data folder is not readable ({err.strerror or err})")
            for file in files:
                if file.suffix.lower() == ZIP_SUFFIX:
                    sources += _zip_members(file)
                elif file.suffix.lower() in IMAGE_SUFFIXES:
                    sources.append(ImageSource(str(file)))
        elif path.is_file() and path.suffix.lower() == ZIP_SUFFIX:
            sources += _zip_members(path)
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            sources.append(ImageSource(str(path)))
        elif path.exists():
            raise PulseError(f"{path}: not a folder, zip shard or image")
        else:
            raise PulseError(f"{path}: no such data folder or file")
    if not sources:
        shown = ", ".join(map(str, paths)) or "(none given)"
        raise PulseError(f"{shown}: no training images found (looked recursively for "
                         f"{' '.join(IMAGE_SUFFIXES)} files and {ZIP_SUFFIX} shards)")
    return sources


def describe_sources(sources: list[ImageSource]) -> str:
    """A short human description of where the images came from, for logs and generator metadata."""
    zips = sorted({s.container for s in sources if s.member})
    files = sum(1 for s in sources if not s.member)
    parts = []
    if zips:
        shown = ", ".join(Path(z).name for z in zips[:6]) + (", ..." if len(zips) > 6 else "")
        parts.append(f"{len(zips)} zip shard(s) ({shown})")
    if files:
        folders = sorted({str(Path(s.container).parent) for s in sources if not s.member})
        parts.append(f"{files} file(s) in {', '.join(folders[:3])}" + (", ..." if len(folders) > 3 else ""))
    return f"{len(sources):,} images from " + " and ".join(parts)


class ImageDecoder:
    """Bytes of any image -> (3, res, res) uint8 tensor; keeps zip shards open (one handle per process)."""

    def __init__(self, resolution: int):
        self.resolution = resolution
        self._zips: dict[str, zipfile.ZipFile] = {}

    def _read(self, source: ImageSource) -> bytes:
        if not source.member:
            return Path(source.container).read_bytes()
        zf = self._zips.get(source.container)
        if zf is None:
            zf = self._zips[source.container] = zipfile.ZipFile(source.container)
        return zf.read(source.member)

    def decode(self, source: ImageSource) -> tuple[torch.Tensor | None, tuple[str, ...]]:
        """The image at the training size and what had to be done to it; (None, ("corrupt",)) if unreadable."""
        res, changes = self.resolution, []
        try:
            with Image.open(io.BytesIO(self._read(source))) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ValueError("too many pixels")
                if min(img.size) != res:
                    changes.append("resized")
                img.draft("RGB", (res, res))  # JPEG: decode large images at a reduced scale, much faster
                if img.mode != "RGB":
                    changes.append("converted")
                with warnings.catch_warnings():  # counted in ``changes``: a warning per image would drown the log
                    warnings.simplefilter("ignore")
                    img = to_rgb(ImageOps.exif_transpose(img), str(source))  # exactly as inference reads inputs
        except Exception:  # truncated data, bad CRC, unknown format: Pillow and zipfile raise many types
            return None, ("corrupt",)
        if img.width != img.height:
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side))
            changes.append("cropped")
        if img.size != (res, res):
            img = img.resize((res, res), Image.BICUBIC)
        pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        return pixels.view(res, res, 3).permute(2, 0, 1), tuple(changes)

    def close(self):
        for zf in self._zips.values():
            zf.close()
        self._zips.clear()


class DataOrder:
    """Endless (index, flip) stream over ``size`` images: a fresh permutation and flips each epoch.

    Each epoch's plan is drawn from a generator seeded by (seed, rank, epoch), so the position (epoch, offset)
    is the whole state and resuming needs no random state for the data.
    """

    def __init__(self, size: int, seed: int, rank: int = 0):
        self.size, self.seed, self.rank = size, seed, rank
        self.epoch, self.offset = 0, 0
        self._plan_epoch, self._plan = -1, None

    def _epoch_plan(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._plan_epoch != self.epoch:
            key = ((self.seed * 1_000_003 + self.rank) * 1_000_033 + self.epoch) % 2**63
            rng = torch.Generator().manual_seed(key)
            self._plan = (torch.randperm(self.size, generator=rng), torch.rand(self.size, generator=rng) < 0.5)
            self._plan_epoch = self.epoch
        return self._plan

    def next(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``count`` image indices and whether to mirror each, crossing epochs as needed."""
        indices, flips = [], []
        while count > 0:
            perm, mirror = self._epoch_plan()
            n = min(count, self.size - self.offset)
            indices.append(perm[self.offset:self.offset + n])
            flips.append(mirror[self.offset:self.offset + n])
            self.offset += n
            count -= n
            if self.offset == self.size:
                self.epoch, self.offset = self.epoch + 1, 0
        return torch.cat(indices), torch.cat(flips)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset, "size": self.size}

    def load_state_dict(self, state: dict):
        """Continue where a saved run was; if the data changed size, start a new epoch instead."""
        if state["size"] == self.size:
            self.epoch, self.offset = state["epoch"], state["offset"]
        else:
            self.epoch, self.offset = state["epoch"] + 1, 0


class FaceData:
    """One rank's share of the training images as uint8 (3, res, res), cached in memory when it fits.

    ``rank``/``world`` split the images like a DistributedSampler with a fixed split: rank r owns every
    world-th image, so each process decodes and caches only its own share.
    """

    def __init__(self, paths, resolution: int, cache_bytes: int, rank: int = 0, world: int = 1,
                 report=lambda line: None):
        every = find_images(paths)
        self.description = describe_sources(every)
        self.resolution = resolution
        self.counts = DecodeCounts()
        self._decoder = ImageDecoder(resolution)
        share = every[rank::world]
        if not share:
            raise PulseError(f"data: {len(every)} images cannot be shared by {world} processes")
        self.cached = len(share) * 3 * resolution**2 <= cache_bytes
        if self.cached:
            self.sources, self._images = self._decode_all(share, report)
        else:
            self.sources, self._images = share, None
            self._seen: set[int] = set()
            self._bad: set[int] = set()

    def _decode_all(self, share, report):
        images = torch.empty(len(share), 3, self.resolution, self.resolution, dtype=torch.uint8)
        kept = []
        for i, source in enumerate(share):
            pixels, changes = self._decoder.decode(source)
            self.counts.add(changes, source)
            if pixels is not None:
                images[len(kept)] = pixels
                kept.append(source)
            if (i + 1) % 5000 == 0:
                report(f"data: decoded {i + 1:,}/{len(share):,}")
        self._decoder.close()
        if not kept:
            raise PulseError(f"data: none of the {len(share):,} images could be read ({self.counts.summary()})")
        return kept, images[: len(kept)].clone() if len(kept) < len(share) else images

    def __len__(self) -> int:
        return len(self.sources)

    def to(self, device):
        """Move the cache to the training device, so a batch is one gather there and no host copy."""
        if self._images is not None:
            self._images = self._images.to(device)
        return self

    def take(self, order: DataOrder, count: int, device) -> torch.Tensor:
        """The next ``count`` images of ``order`` as a uint8 batch on ``device``, mirrored where it says."""
        if self._images is not None:
            indices, flips = order.next(count)
            plan = torch.stack([indices, flips.long()]).to(self._images.device, non_blocking=True)
            batch = self._images.index_select(0, plan[0])
            return torch.where(plan[1].bool().view(-1, 1, 1, 1), batch.flip(-1), batch).to(device)
        batch = []
        while len(batch) < count:
            indices, flips = order.next(count - len(batch))
            for index, flip in zip(indices.tolist(), flips.tolist()):
                pixels = self._decode_once_counted(index)
                if pixels is not None:
                    batch.append(pixels.flip(-1) if flip else pixels)
        return torch.stack(batch).to(device)

    def images_at(self, indices) -> torch.Tensor:
        """The images at these positions of this process's share (uint8, CPU), readable ones only."""
        if self._images is not None:
            return self._images[torch.as_tensor(indices, device=self._images.device)].cpu()
        return torch.stack([p for p in map(self._decode_once_counted, indices) if p is not None])

    def _decode_once_counted(self, index: int) -> torch.Tensor | None:
        if index in self._bad:
            return None
        source = self.sources[index]
        pixels, changes = self._decoder.decode(source)
        if index not in self._seen:
            self._seen.add(index)
            self.counts.add(changes, source)
        if pixels is None:
            self._bad.add(index)
            if len(self._bad) == len(self.sources):
                raise PulseError(f"data: none of the {len(self.sources):,} images could be read "
                                 f"({self.counts.summary()})")
        return pixels

    def summary(self) -> str:
        where = "cached in memory" if self.cached else "decoded on the fly (over the cache budget)"
        return f"data: {self.description}; {len(self):,} in this process, {where}; {self.counts.summary()}"
