"""A progress bar on stderr for long operations (ring rebalance, volume copy, backups).

Public: :class:`ProgressBar`.

It stays silent for the first ``delay_s`` (short operations print nothing) and when stderr is not
a terminal, unless forced; it redraws at most ten times a second.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Call ``update(label, done, total)`` as work advances and ``close()`` at the end."""

    def __init__(self, *, delay_s: float = 1.0, stream: TextIO | None = None, force: bool = False):
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.started = time.monotonic()
        self.delay_s = delay_s
        self.last_draw = 0.0
        self.drawn = False

    def update(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.started < self.delay_s:
            return
        if now - self.last_draw < 0.1 and done < total:
            return
        self.last_draw = now
        fraction = done / total if total else 1.0
        width = 30
        filled = int(width * fraction)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{label:<10} [{bar}] {fraction * 100:5.1f}% ({done}/{total})")
        self.stream.flush()
        self.drawn = True

    __call__ = update

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
