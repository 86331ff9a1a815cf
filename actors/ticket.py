"""A ticket: one holder waits for something scarce that another actor hands out.

The giver grants it (the holder goes on) or recalls it (the holder should look again and ask anew);
the holder can also give up waiting. All three happen on one event loop, so each is decided at once:
a ticket granted while its holder was giving up stays granted, and the holder is told so.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class TicketState(enum.Enum):
    NEW = "new"  # issued; the holder is not waiting yet
    WAITING = "waiting"
    GRANTED = "granted"
    RECALLED = "recalled"  # back to the holder: wait again later, or not at all


class Ticket(Generic[T]):
    __slots__ = ("_event", "_on_wait", "state", "value")

    def __init__(self, on_wait: Callable[[], None] | None = None) -> None:
        self.state = TicketState.NEW
        self.value: T | None = None  # what the grant handed over
        self._event = anyio.Event()
        self._on_wait = on_wait  # called (no arguments) each time the holder starts waiting

    @property
    def waiting(self) -> bool:
        return self.state == TicketState.WAITING

    def grant(self, value: T) -> bool:
        """Hand ``value`` to a waiting holder; False when it is not waiting (then nothing changes)."""
        if self.state != TicketState.WAITING:
            return False
        self.state, self.value = TicketState.GRANTED, value
        self._event.set()
        return True

    def recall(self) -> bool:
        """Send a waiting holder back to look again; False when it is not waiting."""
        if self.state != TicketState.WAITING:
            return False
        self.state = TicketState.RECALLED
        self._event.set()
        return True

    async def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a grant: True once granted (also if it already was)."""
        if self.state == TicketState.GRANTED:
            return True
        self.state, self._event = TicketState.WAITING, anyio.Event()
        if self._on_wait is not None:
            self._on_wait()
        with anyio.move_on_after(timeout_s):
            await self._event.wait()
        if self.state == TicketState.GRANTED:
            return True
        self.state = TicketState.RECALLED  # timed out or recalled: no grant can land until it waits again
        return False
