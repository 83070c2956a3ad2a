"""One batch engine for the commands that turn many inputs into files in one folder (`pulse run`, `restore`,
`align`), and for Python users who do the same: plan, deliver, summarise.

- **Plan**: the output folder is locked; inputs that are pulse's own outputs there are dropped; what is done with
  the same settings (``made_with``) is skipped; finished work made with other settings stops the batch unless it
  is to be redone; an output that would land on an input or on a file pulse did not make stops it too.
- **Deliver**: each output's report line first, then its file (``output_folder``), so the folder always names what
  pulse wrote; a failed input is one report line and the batch goes on.
- **Share**: the inputs are split between the processes of a run (torchrun) and between independent runs
  (``shard=(i, n)``, e.g. one per machine): each takes every n-th input.
- **Summarise**: counts over the whole report, whichever process or shard made each line.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .errors import PulseError
from .output_folder import OutputFolder, file_sha256
from .search import SearchOptions
from .training import distributed


@dataclass
class Summary:
    processed: int  # inputs delivered by this run (all its processes)
    skipped: int  # finished before with the same settings
    failed: int  # inputs whose last word in the report is an error
    outputs: int  # outputs the report holds for the inputs
    not_consistent: int  # of those, not within eps


def parse_shard(text: str) -> tuple[int, int]:
    """"i/n" (0 <= i < n) -> (i, n): this run takes inputs i, i + n, i + 2n, ..."""
    index, sep, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        shard = (-1, 0)
    if not sep or not 0 <= shard[0] < shard[1]:
        raise PulseError(f"shard {text!r}: give i/n with 0 <= i < n, e.g. 0/4 for the first of four")
    return shard


class BatchJob:
    """``with BatchJob(folder, made_with).open() as job``: plan the inputs, work on ``job.todo``, ``deliver`` or
    ``fail`` each, then ``finish`` for the summary."""

    def __init__(self, output_dir, made_with: dict, *, processes: distributed.Processes | None = None,
                 shard: tuple[int, int] = (0, 1)):
        self.output_dir = Path(output_dir)
        self.made_with = made_with
        self.processes = processes or distributed.Processes()
        self.shard = shard
        self.todo: list[tuple[Path, str]] = []  # (input, its content sha256) still to work on
        self.skipped = 0
        self._mine: list[Path] = []
        self._inputs: list[Path] = []
        self._processed = 0
        self._owned: set[str] = set()
        self.delivered: list[dict] = []  # after ``finish``: the report line of each output of the batch's inputs

    @property
    def report_path(self) -> Path:
        return self.folder.report_path

    @property
    def _sharded(self) -> bool:
        return self.shard[1] > 1

    def open(self) -> BatchJob:
        """Lock the folder: one run at a time, or the shards of one batch side by side (each takes a shared lock
        and none rewrites the report while the others append to it). The main process of a torchrun locks and
        tidies the report first; the others read it after (or share its error)."""
        problem = None
        if self.processes.is_main:
            try:
                self.folder = OutputFolder(self.output_dir).open(shared=self._sharded)
                if not self._sharded:
                    self.folder.compact()
            except PulseError as err:
                problem = str(err)
        problem = distributed.gather(problem, self.processes)[0]
        if problem:
            raise PulseError(problem)
        if not self.processes.is_main:
            self.folder = OutputFolder(self.output_dir).open(lock=False)
        return self

    def inputs_here(self, inputs: list[Path]) -> list[Path]:
        """``inputs`` less the files pulse wrote in this folder (an output folder inside the input folder)."""
        return self.folder.not_ours(inputs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.folder.close()

    def plan(self, inputs: list[Path], outputs_of: Callable[[Path], list[str] | None],
             writes_of: Callable[[Path], list[str]] | None = None, overwrite: bool = False) -> list[Path]:
        """Decide what this process does of ``inputs`` (all the batch's inputs, the folder's own outputs dropped:
        ``inputs_here``; every process and shard plans alike). ``outputs_of(input)``: the names of its outputs, or
        None where they are known only after the work (align: one per face found); ``writes_of``: every name it
        writes (grids, frames), default its outputs. Stops (PulseError) before any work if an output would land
        on an input or on a file pulse did not make, or if finished work was made with other settings (unless
        ``overwrite``). Returns the inputs this process takes (``todo`` holds those still to do)."""
        self._inputs = inputs
        mine = inputs[self.shard[0]:: self.shard[1]]
        mine = mine[self.processes.rank:: self.processes.world]
        self._mine = mine
        resolved = {f.resolve() for f in inputs}
        refused, differ = [], {}
        owned, done = self.folder.owned(), self.folder.finished()
        self._owned = owned
        for path in mine:
            input_sha = file_sha256(path) if path.is_file() else ""
            names = outputs_of(path)
            finished = done.get(str(path.resolve()), {})
            settled = set(names) <= set(finished) if names is not None else bool(finished)
            if not overwrite and finished and settled:
                lines = [finished[n] for n in names] if names is not None else list(finished.values())
                if any(line.get("input_sha256") != input_sha for line in lines):
                    pass  # the input changed since: new work
                elif all(line.get("made_with") == self.made_with for line in lines):
                    self.skipped += 1
                    continue
                else:
                    was = next(line.get("made_with") for line in lines if line.get("made_with") != self.made_with)
                    for key, (before, now) in _differences(was, self.made_with).items():
                        differ.setdefault(key, (before, now))
            for name in (writes_of(path) if writes_of else names or []):
                target = self.folder.path / name
                if target.resolve() in resolved:
                    refused.append(f"{target} (an input)")
                elif (target.exists() or target.is_symlink()) and name not in owned:
                    refused.append(f"{target} (not made by pulse: {self.report_path.name} does not name it)")
            self.todo.append((path, input_sha))
        if refused:
            more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
            raise PulseError(f"refusing to write over {', '.join(refused[:3])}{more}; choose another --output")
        if differ:
            said = "; ".join(f"{key} {was} -> {now}" for key, (was, now) in differ.items())
            raise PulseError(f"{self.report_path}: finished work was made with other settings ({said}); rerun with "
                             "the same settings, choose another --output, or add --overwrite to redo it")
        return mine

    def deliver(self, path: Path, input_sha: str, outputs: list[tuple[str, bytes, dict]],
                extras: list[tuple[str, bytes]] = ()) -> None:
        """An input's outputs: (name, file bytes, fields for its report line) each, and ``extras`` (grids, frames:
        files its lines name). Names not planned (align's faces) are checked here: one that is not pulse's refuses
        this input (PulseError), nothing of it written."""
        foreign = [self.folder.path / name for name, _, _ in outputs if name not in self._owned
                   and ((self.folder.path / name).exists() or (self.folder.path / name).is_symlink())]
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise PulseError(f"{path}: refusing to write over {foreign[0]}{more} (not made by pulse: "
                             f"{self.report_path.name} does not name it); choose another --output")
        source = str(path.resolve())
        self.folder.append(*({"input": str(path), "source": source, "input_sha256": input_sha, "output": name,
                              "status": "ok", **fields, "sha256": hashlib.sha256(data).hexdigest(),
                              "made_with": self.made_with} for name, data, fields in outputs))
        self._owned.update(name for name, _, _ in outputs)
        for name, data in extras:
            self.folder.write_file(name, data)
        for name, data, _ in outputs:
            self.folder.write_file(name, data)
        self._processed += 1

    def fail(self, path: Path, error: str) -> None:
        self.folder.append({"input": str(path), "source": str(path.resolve()), "status": "error", "error": error})

    def finish(self, outputs_of: Callable[[Path], list[str] | None] | None = None) -> Summary:
        """Tidy the report (one line per output) and count over all of it, for the whole batch's inputs.
        ``outputs_of``: as for ``plan``; without it, every output line of an input counts."""
        distributed.barrier(self.processes)
        if self.processes.is_main and not self._sharded:
            self.folder.compact()
        distributed.barrier(self.processes)
        self.folder.reload()  # every process counts from the whole report
        counts = [sum(c) for c in zip(*distributed.gather((self._processed, self.skipped), self.processes))]
        inputs = self._mine if self._sharded else self._inputs
        sources = {str(f.resolve()): f for f in inputs}
        expected = None
        if outputs_of is not None:
            expected = {(source, name) for source, f in sources.items() for name in outputs_of(f) or ()}
        failed = sum(e["status"] == "error" and e.get("source") in sources for e in self._last_words(sources))
        ok = [e for e in self.folder.lines if e["status"] == "ok" and e.get("source") in sources and "sha256" in e
              and (expected is None or (e["source"], e["output"]) in expected)]
        ok = list({(e["source"], e["output"]): e for e in ok}.values())
        self.delivered = ok
        below = sum(e.get("success") is False for e in ok)
        distributed.barrier(self.processes)
        return Summary(counts[0], counts[1], failed, len(ok), below)

    def _last_words(self, sources: dict) -> list[dict]:
        """Per input, its last line: an error counts only if nothing was delivered after it."""
        last: dict[str, dict] = {}
        for line in self.folder.lines:
            if line.get("source") in sources and (line["status"] != "ok" or "sha256" in line):
                last[line["source"]] = line
        return list(last.values())


def method_settings(upsampler, scale: float, seed: int, samples: int, options: dict) -> dict:
    """Everything about a method that decides an output's pixels, as the report records it (a rerun compares it)."""
    source = Path(upsampler.model.source)
    sha256 = file_sha256(source) if source.is_file() else str(source)
    if upsampler.method != "pulse":  # deterministic: the network and the scale decide the pixels
        return {"method": upsampler.method, "model_sha256": sha256, "scale": scale,
                "eps": options.get("eps", SearchOptions.eps)}
    search = asdict(upsampler.search_options(scale, **options))
    search.pop("frame_every")  # intermediate frames are extra files, not a different result
    encoder = upsampler.encoder_for(scale) if search["init"] == "encoder" else None
    return {"method": "pulse", "generator_sha256": sha256, "scale": scale, "seed": seed, "samples": samples,
            "search": search, **({} if encoder is None else {"encoder_sha256": file_sha256(encoder.source)})}


def _differences(was: dict | None, now: dict) -> dict[str, tuple]:
    """Setting -> (recorded, asked) for each that differs; 'search.steps' style keys."""
    if was is None:
        return {"settings": ("not recorded (an older pulse)", "recorded")}
    flat_was, flat_now = _flatten(was), _flatten(now)
    return {key: (flat_was.get(key), flat_now.get(key)) for key in flat_now.keys() | flat_was.keys()
            if flat_was.get(key) != flat_now.get(key)}


def _flatten(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
