"""A one-line progress bar on stderr for admin commands that walk many jobs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Bar:
    def __init__(self, label: str, total: int, *, unit: str = "jobs", stream: TextIO | None = None,
                 min_interval_s: float = 0.2) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < self.min_interval_s and done < self.total:
            return  # redrawing on every job would cost more than the work
        self._last = now
        frac = min(done / self.total, 1.0) if self.total else 1.0
        self.stream.write(f"\r{self.label} [{'#' * int(frac * 30):<30}] {done}/{self.total} {self.unit}")
        self.stream.flush()
        self._drawn = True

    def done(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
