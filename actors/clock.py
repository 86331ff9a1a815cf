"""Injectable clocks: business time comes from here, never from ``datetime.now()`` in logic.

``RealClock`` is wall time. ``SimClock`` runs ``speed`` business seconds per real second from a
chosen start and can be jumped forward (``advance``), which wakes every sleeper so it re-checks
its deadline. ``speed=0`` gives a manual clock that moves only when advanced (unit tests).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import anyio


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Current business time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of business time."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Sleep until business time reaches ``when`` (returns at once if already past)."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """Real seconds that ``seconds`` of business time take (for I/O timeouts)."""
        ...


def utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC (PyMongo returns them so without ``tz_aware``)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: datetime) -> None:
        await self.sleep((utc(when) - self.now()).total_seconds())

    def real_seconds(self, seconds: float) -> float:
        return seconds


class SimClock:
    def __init__(self, start: datetime, speed: float = 0.0) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self._speed = speed
        self._origin = utc(start)
        self._t0 = time.monotonic()
        self._jumped: anyio.Event | None = None

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, speed: float) -> None:
        # Rebase first: elapsed time so far was run at the old speed and must not be rescaled.
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self._origin = self.now()
        self._t0 = time.monotonic()
        self._speed = speed
        self._wake()

    def now(self) -> datetime:
        return self._origin + timedelta(seconds=(time.monotonic() - self._t0) * self._speed)

    def advance(self, seconds: float) -> None:
        """Jump business time forward and wake sleepers; used to skip idle stretches."""
        if seconds <= 0:
            return
        self._origin += timedelta(seconds=seconds)
        self._wake()

    def _wake(self) -> None:
        # Sleepers re-check their deadline (and real timeout) against the new time or speed.
        if self._jumped is not None:
            self._jumped.set()
            self._jumped = None

    def advance_to(self, when: datetime) -> None:
        self.advance((utc(when) - self.now()).total_seconds())

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + timedelta(seconds=max(0.0, seconds)))

    async def sleep_until(self, when: datetime) -> None:
        when = utc(when)
        while (remaining := (when - self.now()).total_seconds()) > 0:
            if self._jumped is None:
                self._jumped = anyio.Event()
            jumped = self._jumped
            with anyio.move_on_after(self.real_seconds(remaining)):
                await jumped.wait()
        await anyio.lowlevel.checkpoint()

    def real_seconds(self, seconds: float) -> float:
        return math.inf if self._speed == 0 else seconds / self._speed
