"""What every trainer's run folder shares: file names, the status line and ``log.jsonl``, stop requests.

A run folder holds ``latest.ckpt`` (always a complete checkpoint, so a stopped run resumes exactly),
snapshots kept for good, ``log.jsonl`` (one JSON object a line, each with its step) and sample grids.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from ..errors import Interrupted, PulseError
from ..imageio import write_text_atomic

LATEST, LOG_FILE = "latest.ckpt", "log.jsonl"


@contextlib.contextmanager
def stop_requests(enabled: bool):
    """Ctrl-C / SIGTERM ask the loop to stop after the current step (truthy when asked), so the checkpoint
    saved then resumes exactly; a second Ctrl-C interrupts at once. Several processes: torchrun's business.
    A signal ignored when the run started (nohup, a background job) stays ignored."""
    asked: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def ask(signum, frame):
        asked.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) is not signal.SIG_IGN}  # nohup'ed or background runs keep ignoring
    try:
        yield asked
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def resumed_config(config_class, given: dict, base: dict, architecture, origin: str, what: str,
                   required=("data", "out"), show=str):
    """A trainer's config from the options given on this command line over ``base`` (a resumed checkpoint's
    config, or an init file's shape): an architecture option that contradicts the base is an error, not an
    override; an option the trainer does not know is named (a checkpoint of another trainer or version)."""
    for key in architecture:
        if key in given and key in base and given[key] != base[key]:
            raise PulseError(f"{origin}: made with {key}={show(base[key])}, but this run asks for {show(given[key])}")
    merged = {**base, **given}
    unknown = set(merged) - {f.name for f in fields(config_class)}
    if unknown:
        raise PulseError(f"{origin or 'config'}: unknown {what} options {', '.join(sorted(unknown))}")
    for name in required:
        if not merged.get(name):
            raise PulseError(f"--{name} is required")
    return config_class(**merged)


def refuse_second_run(out: Path, resumed: bool) -> None:
    """A new run never starts over a run folder's checkpoint: the user continues it or chooses another folder."""
    if not resumed and (out / LATEST).exists():
        raise PulseError(f"{out}: already holds a training run; continue it with --resume {out / LATEST} "
                         f"or choose another --output")


def stopped(out: Path, nimg: int) -> Interrupted:
    """What a run stopped by Ctrl-C/SIGTERM says, once its checkpoint is saved."""
    return Interrupted(f"at {nimg / 1000:.3f} kimg; the state is saved: continue with --resume {out / LATEST}")


def crossed(before: int, after: int, every: int) -> bool:
    """Whether going from ``before`` to ``after`` images passed a multiple of ``every``."""
    return after // every > before // every


def _logged_by(line: str, step: int) -> bool:
    """Whether a log line is complete and from step ``step`` or before."""
    try:
        return json.loads(line)["step"] <= step
    except (json.JSONDecodeError, KeyError, TypeError):
        return False


class Progress:
    """The status line on stderr and ``log.jsonl``: kimg, img/s, the losses as ``describe`` words them, wall
    time (one process only: ``enabled``)."""

    def __init__(self, out: Path, total_img: int, nimg: int, step: int, wall_before: float, enabled: bool,
                 describe: Callable[[dict], str]):
        self.log_path, self.total_img, self.enabled, self.describe = out / LOG_FILE, total_img, enabled, describe
        if enabled and self.log_path.exists():  # a resumed run: drop lines logged after its checkpoint
            write_text_atomic(self.log_path, "".join(
                line for line in self.log_path.read_text().splitlines(keepends=True) if _logged_by(line, step)))
        self.tty = enabled and sys.stderr.isatty()
        self.started = self.last_time = self.last_draw = time.monotonic()
        self.wall_before, self.last_nimg, self.excluded = wall_before, nimg, 0.0
        self.losses = ""

    def wall(self) -> float:
        return self.wall_before + time.monotonic() - self.started

    def exclude(self, seconds: float):
        """Leave checkpoint and grid writing out of the next img/s figure."""
        self.excluded += seconds

    def tick(self, nimg: int):
        if self.tty and time.monotonic() - self.last_draw > 0.5:
            self.last_draw = time.monotonic()
            rate = (nimg - self.last_nimg) / max(self.last_draw - self.last_time - self.excluded, 1e-9)
            self._draw(nimg, rate, end="")

    def record(self, nimg: int, step: int, stats: dict) -> dict:
        now = time.monotonic()
        rate = (nimg - self.last_nimg) / max(now - self.last_time - self.excluded, 1e-9)
        self.last_time, self.last_nimg, self.excluded = now, nimg, 0.0
        entry = {"kimg": round(nimg / 1000, 3), "step": step, **stats, "img_per_s": round(rate, 2),
                 "wall_s": round(self.wall(), 1)}
        if self.enabled:
            with open(self.log_path, "a") as log:
                log.write(json.dumps(entry) + "\n")
            self.losses = self.describe(stats)
            self._draw(nimg, rate, end="" if self.tty else "\n")
        return entry

    def record_metrics(self, nimg: int, step: int, metrics: dict):
        """A log line of metrics (its own line: loss lines keep their shape)."""
        if self.enabled:
            with open(self.log_path, "a") as log:
                log.write(json.dumps({"kimg": round(nimg / 1000, 3), "step": step, "metrics": metrics}) + "\n")
            shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
            print(("\r\033[K" if self.tty else "") + f"kimg {nimg / 1000:.2f} metrics: {shown}", file=sys.stderr,
                  flush=True)

    def _draw(self, nimg: int, rate: float, end: str):
        left = (self.total_img - nimg) / max(rate, 1e-9)
        eta = f"{left / 3600:.1f} h" if left >= 3600 else f"{left / 60:.0f} min"
        line = (f"kimg {nimg / 1000:.2f}/{self.total_img / 1000:g}  {rate:.1f} img/s  {self.losses}  "
                f"eta {eta}")
        print(("\r\033[K" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)

    def close(self):
        if self.tty:
            print(file=sys.stderr)
