"""Training checkpoints: atomic files of tensors, dicts, lists, numbers and strings, and RNG state capture.

A checkpoint must load with ``torch.load(weights_only=True)`` (no code runs when reading it), so random
states are stored as tensors and plain numbers. It is written to a temp file in the run folder and renamed
over ``latest.ckpt``: a crash or a full disk mid-save leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import PulseError
from ..files import atomic_path, load_payload

CHECKPOINT_FORMAT = "pulse-train-checkpoint"
CHECKPOINT_VERSION = 2  # 2: run["commands"], the whole command history


def capture_rng(device: torch.device) -> dict:
    """torch (CPU and the CUDA device), numpy and python random states, as weights-only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0, dtype=torch.uint8),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def restore_rng(state: dict, device: torch.device):
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"].numel():
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss_next"]))


def save_checkpoint(path, payload: dict) -> Path:
    """Write ``payload`` atomically; an OSError (disk full, permissions) becomes one PulseError line."""
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as err:
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint was written"
        raise PulseError(f"{path}: could not save checkpoint ({err.strerror or err}); {kept}")
    return path


def keep_copy(src, dst) -> Path:
    """Keep ``src`` as ``dst`` for good: a hard link (free; ``src`` is later replaced, not rewritten), else a copy."""
    dst = Path(dst)
    try:
        os.link(src, dst)
    except OSError:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return dst


def load_checkpoint(path, kind: str = "generator") -> dict:
    """Read a training checkpoint without unpickling code, or raise PulseError naming the file. ``kind``: whose
    checkpoint it must be, ``pulse train``'s ("generator") or ``pulse train-sr``'s ("srgan")."""
    payload = load_payload(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "training checkpoint",
                           " (a generator file? use it with --init)")
    found = payload.get("kind", "generator")  # `pulse train` wrote none
    if found != kind:
        command = {"generator": "pulse train", "srgan": "pulse train-sr"}
        raise PulseError(f"{path}: a `{command.get(found, found)}` checkpoint; use it with "
                         f"`{command.get(found, found)} --resume` or `{command.get(found, found)} export`")
    if payload["version"] < 2:  # version 1 kept only the latest command; when it took over is unknown
        payload["run"]["commands"] = [{"from_kimg": None, "command": payload["run"].pop("command")}]
    return payload
