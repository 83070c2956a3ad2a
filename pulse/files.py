"""Files that are never half-written and never run code when read.

``atomic_path`` gives a temp name in the target's folder and renames it over the target only once the
write has finished, so a crash, a full disk or Ctrl-C leaves the previous file (or none), never a broken
one. ``load_payload`` reads pulse's own torch files with ``weights_only=True`` and checks their header.
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import PulseError


@contextmanager
def atomic_path(path):
    """Yield a temp path to write; on success it replaces ``path``, on failure it disappears."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_state(module, half: bool = False) -> dict:
    """A module's state dict as pulse's files store it: detached CPU tensors, floats in float16 if ``half``."""
    return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in module.state_dict().items()}


def save_payload(path, payload: dict, what: str) -> Path:
    """Write one of pulse's torch files atomically; an OSError (disk full, permissions) is one PulseError line."""
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as err:
        raise PulseError(f"{path}: could not write the {what} ({err.strerror or err})")
    return Path(path)


def load_payload(path, file_format: str, version: int, what: str, wrong_format_hint: str = "") -> dict:
    """Read a pulse torch file (a dict with 'format' and 'version') or raise one PulseError line naming it."""
    path = Path(path)
    if not path.is_file():
        raise PulseError(f"{path}: {what} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, or a pickle that would need code to load
        first_line = (str(err).splitlines() or [""])[0][:160]
        raise PulseError(f"{path}: not a readable {what} ({type(err).__name__}: {first_line})")
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise PulseError(f"{path}: not a pulse {what}{wrong_format_hint}")
    if payload.get("version", 0) > version:
        raise PulseError(f"{path}: {what} version {payload['version']} is newer than this pulse supports")
    return payload


def installed_package_file(package: str, relative: str) -> Path | None:
    """A model file shipped inside an installed PyPI package, found without importing the package
    (face_recognition_models' __init__ needs pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / relative
        if path.is_file():
            return path
    return None
