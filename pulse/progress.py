"""How library code tells a person what a long operation is doing, without depending on the command line.

``notice(line)`` writes one line to stderr. ``progress_bar(total, label)`` is a bar that redraws itself in place
on a terminal and, in logs and pipes, writes a single line when it ends (so CI logs are not flooded, and a log
never starts with a bare label).
"""

from __future__ import annotations

import sys
import time


def notice(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class progress_bar:  # noqa: N801 - used like a function: ``with progress_bar(n, "label") as bar``
    """``with progress_bar(total, label) as bar: bar.update(n, item)``; ``total`` None shows only the count;
    ``item`` (e.g. the file or step at hand) is shown after the bar on a terminal; ``hidden`` draws nothing (the
    other processes of a distributed run)."""

    WIDTH = 30
    REDRAW_S = 0.1

    def __init__(self, total: int | None, label: str, stream=None, hidden: bool = False):
        self.total, self.label, self.done, self.item = total, label, 0, ""
        self.stream = stream or sys.stderr
        self.hidden = hidden
        self.live = not hidden and self.stream.isatty()
        self._drawn_at, self._drawn_width = 0.0, 0

    def __enter__(self):
        self._draw(force=True)
        return self

    def update(self, n: int, item: str | None = None) -> None:
        self.done += n
        if item is not None:
            self.item = item
        self._draw(force=item is not None and n > 0)

    def __exit__(self, *exc):
        if self.hidden:
            return
        if self.live:
            self.item = ""
            self._draw(force=True)
            self.stream.write("\n")
        elif exc[0] is None:
            self.stream.write(self._line() + "\n")
        self.stream.flush()

    def _line(self) -> str:
        if not self.total:
            return f"{self.label}  {self.done:,}"
        filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        return f"{self.label}  [{bar}]  {100 * self.done // self.total:3d}%  {self.done:,}/{self.total:,}"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.live and (force or now - self._drawn_at >= self.REDRAW_S):
            line = self._line() + (f"  {self.item}" if self.item else "")
            self.stream.write("\r" + line.ljust(self._drawn_width))  # blanks what a longer line left
            self.stream.flush()
            self._drawn_at, self._drawn_width = now, len(line)
