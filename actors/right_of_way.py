"""Right of way: urgent work goes first on a shared resource, and ordinary work gives way to it.

Holders are named: ``hold(key)`` marks urgent work as begun and ``let_go(key)`` as over (both
synchronous, idempotent by key, so a callback can call them from any task of the loop). Before ordinary
work starts it calls ``give_way(max_wait_s)``, which returns at once when nothing urgent is held, else
when the last holder lets go or ``max_wait_s`` real seconds have passed: ordinary work is delayed,
never starved.
"""

from __future__ import annotations

from collections.abc import Hashable

import anyio


class RightOfWay:
    __slots__ = ("_clear", "_holders", "waits")

    def __init__(self) -> None:
        self._holders: set[Hashable] = set()
        self._clear: anyio.Event | None = None  # set when the last holder lets go; None: nothing held
        self.waits = 0  # times ordinary work found urgent work held (what a caller can count)

    @property
    def held(self) -> bool:
        return bool(self._holders)

    def holds(self, key: Hashable) -> bool:
        return key in self._holders

    def hold(self, key: Hashable) -> None:
        self._holders.add(key)
        if self._clear is None:
            self._clear = anyio.Event()

    def let_go(self, key: Hashable) -> None:
        self._holders.discard(key)
        if not self._holders and self._clear is not None:
            self._clear.set()
            self._clear = None

    async def give_way(self, max_wait_s: float) -> None:
        clear = self._clear
        if clear is None:
            return
        self.waits += 1
        with anyio.move_on_after(max_wait_s):
            await clear.wait()
