"""A batch run's output folder: pulse never writes over what it did not make, and a rerun knows what is done.

- **One run at a time**: the folder is locked (``flock`` on the folder itself, released by the kernel when the
  process ends, even by ``kill -9``); a second run into it stops with a clear line.
- **The report** (report.jsonl) has a JSON line per output or failed input, appended as each result is made.
  A line is written *before* the file it names, so every file pulse ever wrote into the folder is named by a
  line: a file no line names is the user's, and pulse refuses to write over it (or over any of its inputs).
- **Resume**: a line records what made it (input content hash, generator file hash, every setting that changes
  the result) and its file's sha256; an output is done when its file still has that hash. Lines are compacted
  (the last word per output) when a run starts and ends, atomically, so a crash leaves the old report.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from .errors import PulseError
from .files import atomic_path

REPORT_NAME = "report.jsonl"
STALE_TEMP = re.compile(r"\..+\.\d+\.tmp")


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OutputFolder:
    """``open`` it before any work: it creates the folder, proves it writable, locks it and reads the report."""

    def __init__(self, path):
        self.path = Path(path)
        self.report_path = self.path / REPORT_NAME
        self.lines: list[dict] = []
        self._lock_fd: int | None = None
        self._torn = False  # an append failed half-way: the next one starts on a fresh line

    def open(self, lock: bool = True, shared: bool = False) -> OutputFolder:
        """``lock=False`` for the helper processes of a run whose main process holds the lock; ``shared`` for the
        shards of one batch, which may write side by side (any other run still waits for them, and they for it)."""
        if self.path.exists() and not self.path.is_dir():
            raise PulseError(f"{self.path}: is a file, not a folder; choose another --output")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            place = next(p for p in self.path.absolute().parents if p.exists())
            raise PulseError(f"{self.path}: cannot create this folder in {place} ({err.strerror or err}); "
                             "choose another --output") from None
        try:
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".pulse-probe-") as probe:
                probe.write(b"pulse")
                probe.flush()
        except OSError as err:
            raise PulseError(f"{self.path}: cannot write into this folder ({err.strerror or err})") from None
        if self.report_path.exists() and not self.report_path.is_file():
            raise PulseError(f"{self.report_path}: is not a file; choose another --output")
        if lock:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise PulseError(f"{self.path}: another pulse run is writing into this folder; wait for it to end "
                                 "or choose another --output") from None
            self._lock_fd = fd
            self._remove_stale_temp_files()
        self.reload()
        return self

    def _remove_stale_temp_files(self) -> None:
        """A killed run can leave the temp file of an atomic write (``files.atomic_path`` names them
        ``.NAME.PID.tmp``); with the lock held no other run is writing one, so they are debris."""
        for folder in (self.path, self.path / "grid"):
            for path in folder.glob(".*.tmp") if folder.is_dir() else ():
                if STALE_TEMP.fullmatch(path.name) and path.is_file():
                    path.unlink(missing_ok=True)

    def reload(self) -> None:
        """Read the report again (after another process of the run compacted it)."""
        self.lines = self._read()

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self) -> list[dict]:
        """The report's lines; a line torn by a crash or a full disk is dropped. A file that holds no pulse line
        at all is not pulse's report, and is never written over."""
        if not self.report_path.is_file():
            return []
        lines = []
        text = self.report_path.read_text(errors="replace")
        for raw in text.splitlines():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "input" in entry and "status" in entry:
                lines.append(entry)
        if text.strip() and not lines:
            raise PulseError(f"{self.report_path}: not a pulse report (pulse will not write over it); "
                             "choose another --output")
        return lines

    def owned(self) -> set[str]:
        """Names (relative to the folder) of everything pulse has written, or was about to write, here."""
        names = {REPORT_NAME}
        for line in self.lines:
            names.update(line[key] for key in ("output", "grid", "frames") if line.get(key))
        return names

    def owned_paths(self) -> set[Path]:
        return {(self.path / name).resolve() for name in self.owned()}

    def not_ours(self, inputs: list[Path]) -> list[Path]:
        """The inputs that are not pulse's outputs here (an output folder inside or equal to the input folder)."""
        ours = self.owned_paths()
        return [path for path in inputs if path.resolve() not in ours]

    def finished(self) -> dict[str, dict[str, dict]]:
        """Per input (resolved path), the last ok line per output whose file still holds what the line says it
        wrote. One pass over the report, however many inputs ask."""
        latest: dict[str, dict[str, dict]] = {}
        for line in self.lines:
            if line.get("status") == "ok" and line.get("source"):
                latest.setdefault(line["source"], {})[line["output"]] = line
        return {source: {name: line for name, line in outputs.items() if self._intact(line)}
                for source, outputs in latest.items()}

    def _intact(self, line: dict) -> bool:
        path = self.path / line["output"]
        return path.is_file() and line.get("sha256") == file_sha256(path)

    def append(self, *entries: dict) -> None:
        """Add lines to the report in one write (``O_APPEND``: lines of the processes of one run never mix)."""
        text = ("\n" if self._torn else "") + "".join(json.dumps(e) + "\n" for e in entries)
        fd = os.open(self.report_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._torn = True
            view = memoryview(text.encode())
            while view:
                view = view[os.write(fd, view):]
            self._torn = False
        finally:
            os.close(fd)
        self.lines.extend(entries)

    def write_file(self, name: str, data: bytes) -> None:
        with atomic_path(self.path / name) as tmp:
            tmp.write_bytes(data)

    def compact(self) -> None:
        """Rewrite the report with the last line per output, and per input that never got an output its last
        error: what a reader of report.jsonl expects, one line per output."""
        self.reload()
        last_ok = {line["output"]: line for line in self.lines if line["status"] == "ok"}
        done_sources = {line.get("source") for line in last_ok.values()}
        last_error = {line.get("source", line["input"]): line for line in self.lines if line["status"] != "ok"}
        kept = [line for line in self.lines
                if (line["status"] == "ok" and last_ok[line["output"]] is line)
                or (line["status"] != "ok" and last_error[line.get("source", line["input"])] is line
                    and line.get("source") not in done_sources)]
        with atomic_path(self.report_path) as tmp:
            tmp.write_text("".join(json.dumps(e) + "\n" for e in kept))
        self.lines = kept
