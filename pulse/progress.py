"""How library code tells a person what a long operation is doing, without depending on the command line.

``notice(line)`` writes one line to stderr. ``progress_bar(total, label)`` is a bar that redraws itself in place
on a terminal and, in logs and pipes, writes a single line when it ends (so CI logs are not flooded).
"""

from __future__ import annotations

import sys
import time


def notice(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class progress_bar:  # noqa: N801 - used like a function: ``with progress_bar(n, "label") as bar``
    """``with progress_bar(total, label) as bar: bar.update(n)``; ``total`` None shows only the count."""

    WIDTH = 30
    REDRAW_S = 0.1

    def __init__(self, total: int | None, label: str, stream=None):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._drawn_at = 0.0

    def __enter__(self):
        self._draw(force=True)
        return self

    def update(self, n: int) -> None:
        self.done += n
        self._draw()

    def __exit__(self, *exc):
        if self.live:
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
            self.stream.write("\r" + self._line())
            self.stream.flush()
            self._drawn_at = now
