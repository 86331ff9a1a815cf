"""Crash points for the real-process crash tests: ``SPEECHAI_CRASH_POINTS=call_created:3`` makes the
process SIGKILL itself the 3rd time it reaches ``call_created``. Unset in production: a no-op."""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "SPEECHAI_CRASH_POINTS"
POINTS = ("attempt_written", "call_created", "tracking", "result_written", "outbox_written")

_plan: dict[str, int] = {}
_hits: Counter[str] = Counter()


def _load() -> dict[str, int]:
    plan: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in os.environ.get(ENV, "").split(","))):
        name, _, nth = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown crash point {name!r}; known: {', '.join(POINTS)}")
        plan[name] = int(nth or 1)
    return plan


_plan = _load()


def crash_point(name: str) -> None:
    if name in _plan:
        _hits[name] += 1
        if _hits[name] == _plan[name]:
            os.kill(os.getpid(), signal.SIGKILL)
