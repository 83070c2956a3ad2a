"""The weights cache: where files live, locks, sha256 pins, verification and checked copies.

Every file is written through a temp name and renamed (``files.atomic_path``), checked against the registry's
sha256 and size where known, else pinned on first use, so a truncated or swapped file is caught later.
"""

from __future__ import annotations

import bz2
import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import PulseError
from ..progress import notice
from .download import sha256_file
from .registry import CONVERTED_KINDS, Model, WeightsFile, get_model, load_registry

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent downloads of one file are then the user's care
    fcntl = None


CACHE_ENV = "PULSE_CACHE"


def resolve_cache_dir(cache_dir=None) -> Path:
    """--cache-dir, else $PULSE_CACHE, else ~/.cache/pulse."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pulse").expanduser()


def _inside(base: Path, *parts: str) -> Path:
    """base/parts, refusing anything that resolves outside base (names are validated too; this is the backstop)."""
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base.resolve()):
        raise PulseError(f"{'/'.join(parts)}: resolves outside {base}; refused")
    return path


def cache_path(cache: Path, model: Model, filename: str) -> Path:
    return _inside(cache, model.name, filename)


def shipped_path(wfile: WeightsFile) -> Path:
    return _inside(wfile.folder, wfile.path)


def converted_path(cache: Path, model: Model) -> Path:
    return cache_path(cache, model, f"{model.name}.pt")


@contextmanager
def locked(path: Path):
    """One pulse process at a time per cache file: the next one waits, then finds the finished file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                notice(f"waiting for another pulse process working on {path} ...")
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _pin_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_pin(path: Path) -> str | None:
    """The sha256 recorded when the user accepted a file the registry has no hash for (sha256sum format)."""
    try:
        return _pin_path(path).read_text().split()[0]
    except (FileNotFoundError, IndexError):
        return None


def pin(path: Path, digest: str):
    pin, tmp = _pin_path(path), path.with_name(f".{path.name}.sha256.{os.getpid()}.tmp")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, pin)


def _discard(path: Path):
    path.unlink(missing_ok=True)
    _pin_path(path).unlink(missing_ok=True)


@dataclass(frozen=True)
class FileStatus:
    model: str
    path: Path
    state: str  # "ok", "missing", "corrupt" (deleted when cached), "untrusted" (no sha256 to check against)
    detail: str = ""

    def __str__(self):
        return f"{self.model}: {self.path}: {self.state}" + (f" ({self.detail})" if self.detail else "")


def _check(model: Model, path: Path, sha256: str | None, size: int | None) -> FileStatus:
    if not path.is_file():
        return FileStatus(model.name, path, "missing")
    got = path.stat().st_size
    if size is not None and got != size:
        return FileStatus(model.name, path, "corrupt", f"{got} bytes, expected {size}")
    if sha256 is None:
        return FileStatus(model.name, path, "untrusted", "no sha256 in the registry and none pinned")
    digest = sha256_file(path)
    if digest != sha256:
        return FileStatus(model.name, path, "corrupt", f"sha256 {digest}, expected {sha256}")
    return FileStatus(model.name, path, "ok", f"sha256 {digest}")


def check_cached(model: Model, path: Path, wfile: WeightsFile | None = None) -> FileStatus:
    """Check a cache file against the registry (or its pin) and delete it if it is corrupt. Hold its lock."""
    status = _check(model, path, (wfile and wfile.sha256) or read_pin(path), wfile and wfile.size)
    if status.state == "corrupt":
        _discard(path)
        return FileStatus(model.name, path, "corrupt", status.detail + "; deleted")
    return status


def check_shipped(model: Model, wfile: WeightsFile) -> FileStatus:
    status = _check(model, shipped_path(wfile), wfile.sha256, wfile.size)
    if status.state == "untrusted":  # part of the checkout, like the code
        return FileStatus(model.name, status.path, "ok", "shipped with pulse; no sha256 recorded")
    return status


def verify(name: str | None = None, *, cache_dir=None) -> list[FileStatus]:
    """Re-hash every file of one model (or all); corrupt cached files are deleted so they get fetched again."""
    cache = resolve_cache_dir(cache_dir)
    models = [get_model(name)] if name else list(load_registry().values())
    statuses = []
    for model in models:
        if model.kind in CONVERTED_KINDS:  # the converted file is what gets used; sources only if kept
            sources = [_verify_cached(model, cache_path(cache, model, f.name), f) for f in model.files]
            statuses += [s for s in sources if s.state != "missing"]
            statuses.append(_verify_cached(model, converted_path(cache, model)))
            continue
        wfile = model.files[0]
        status = check_shipped(model, wfile) if wfile.path else None
        if status is None or status.state == "missing":
            cached = _verify_cached(model, cache_path(cache, model, wfile.name), wfile)
            status = cached if status is None or cached.state != "missing" else status
        statuses.append(status)
    return statuses


def _verify_cached(model: Model, path: Path, wfile: WeightsFile | None = None) -> FileStatus:
    if not path.exists():
        return FileStatus(model.name, path, "missing")
    with locked(path):
        return check_cached(model, path, wfile)


def copy_checked(source: Path, target: Path, wfile: WeightsFile) -> tuple[str, str]:
    """Copy (decompressing bz2) through a temp file, check size/sha256, rename into place, pin if unhashed."""
    with open(source, "rb") as probe:
        compressed = probe.read(3) == b"BZh"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.import")
    digest = hashlib.sha256()
    try:
        with (bz2.open(source, "rb") if compressed else open(source, "rb")) as src, open(tmp, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
        size = tmp.stat().st_size
        if wfile.size is not None and size != wfile.size:
            raise PulseError(f"{source}: {size} bytes, but the registry's {wfile.name} has {wfile.size}; not imported")
        if wfile.sha256 is not None and digest.hexdigest() != wfile.sha256:
            raise PulseError(f"{source}: sha256 {digest.hexdigest()} does not match the registry's {wfile.name} "
                             f"({wfile.sha256}); not imported")
        os.replace(tmp, target)
    except (OSError, EOFError) as err:
        raise PulseError(f"{source}: could not be read{' as bz2' if compressed else ''} ({err})")
    finally:
        tmp.unlink(missing_ok=True)
    if wfile.sha256 is None:
        pin(target, digest.hexdigest())
        how = "no sha256 in the registry: pinned"
    else:
        how = "sha256 matches the registry"
    return digest.hexdigest(), ("decompressed, " if compressed else "") + how
