"""Group commit: callers that submit in the same moment share one flush.

The first caller of a round becomes its leader: it yields to the event loop (``window_s``, zero by
default: one scheduling pass), so every caller that submits meanwhile joins the round, then runs
``flush`` once for all of them and hands each its own result, or the flush's exception. The flush is
shielded: a leader cancelled while waiting never strands the callers that joined its round.

``serial``: one flush at a time. A round stays open while the one before it flushes, so under load the
callers of a whole flush's duration share the next one (reads at a server that runs one command at a time).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class _Round(Generic[I, R]):
    __slots__ = ("done", "error", "items", "results")

    def __init__(self) -> None:
        self.items: list[I] = []
        self.results: Sequence[R] = ()
        self.error: BaseException | None = None
        self.done = anyio.Event()


class Batcher(Generic[I, R]):
    def __init__(self, flush: Callable[[list[I]], Awaitable[Sequence[R]]], *, window_s: float = 0.0,
                 max_items: int = 1000, serial: bool = False) -> None:
        self._flush = flush
        self.window_s = window_s
        self.max_items = max_items
        self._open: _Round[I, R] | None = None
        self.serial = serial
        # the flush under way (serial only): its event loop's token, and the event set when it ends
        self._flushing: tuple[object, anyio.Event] | None = None
        self.flushes = 0  # rounds flushed so far (what a caller can count)

    async def submit(self, item: I) -> R:
        rnd = self._open
        if rnd is not None and len(rnd.items) < self.max_items:
            index = len(rnd.items)
            rnd.items.append(item)
            await rnd.done.wait()
        else:
            rnd = self._open = _Round()
            index = 0
            rnd.items.append(item)
            with anyio.CancelScope(shield=True):
                await anyio.sleep(self.window_s)
                while self.serial and (flushing := self._flushing) is not None:  # the round stays open
                    if flushing[0] != anyio.lowlevel.current_token():
                        break  # left over from an event loop that is gone (a module-level batcher)
                    await flushing[1].wait()
                await self._run(rnd)
        if rnd.error is not None:
            raise rnd.error
        return rnd.results[index]

    async def _run(self, rnd: _Round[I, R]) -> None:
        if self._open is rnd:  # closed now: later callers open the next round
            self._open = None
        flushing = self._flushing = (anyio.lowlevel.current_token(), anyio.Event()) if self.serial else None
        try:
            rnd.results = await self._flush(rnd.items)
            if len(rnd.results) != len(rnd.items):
                raise RuntimeError(f"flush returned {len(rnd.results)} results for {len(rnd.items)} items")
        except BaseException as exc:  # every caller of the round sees the flush's own failure
            rnd.error = exc
        finally:
            self.flushes += 1
            rnd.done.set()
            if flushing is not None:
                if self._flushing is flushing:
                    self._flushing = None
                flushing[1].set()
