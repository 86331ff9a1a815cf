"""A small text progress bar on stderr for loads of large files (rows read so far)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class TextProgress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None,
                 min_interval_s: float = 0.2) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._start = time.monotonic()

    def __call__(self, rows: int) -> None:
        now = time.monotonic()
        if now - self._last < self.min_interval_s and (self.total is None or rows < self.total):
            return  # redrawing on every call would cost more than the load
        self._last = now
        rate = rows / max(now - self._start, 1e-6)
        if self.total:
            frac = min(rows / self.total, 1.0)
            bar = "#" * int(frac * 30)
            line = f"{self.label} [{bar:<30}] {rows}/{self.total} rows ({rate:,.0f}/s)"
        else:
            line = f"{self.label} {rows} rows ({rate:,.0f}/s)"
        self.stream.write("\r" + line)
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
