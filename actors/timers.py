"""Timed messages driven by an injected ``Clock`` (business time), so simulations can run fast.

Run these in a task group (or as supervised children) and cancel them to stop them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Generic, TypeVar

from actors.clock import Clock
from actors.mailbox import ActorRef, MailboxClosed

T = TypeVar("T")


async def send_after(clock: Clock, delay_s: float, ref: ActorRef[T], msg: T) -> None:
    """Deliver ``msg`` after ``delay_s`` business seconds, waiting for room if the mailbox is full.

    A mailbox closed meanwhile means its actor is gone, so the message is dropped silently.
    """
    await clock.sleep(delay_s)
    try:
        await ref.tell(msg)
    except MailboxClosed:
        pass


class Ticker(Generic[T]):
    """Sends ``make_msg()`` every ``interval_s`` business seconds, the first one interval after start.

    Ticks keep a fixed schedule (start + k * interval). When the clock jumps over several ticks only
    one message is sent and the schedule resumes from the next future tick. A full mailbox drops the
    tick (counted in ``dropped``) rather than delaying the schedule. ``run`` ends when the mailbox is
    closed, otherwise when cancelled.
    """

    def __init__(self, clock: Clock, interval_s: float, ref: ActorRef[T], make_msg: Callable[[], T]) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.clock = clock
        self.interval = timedelta(seconds=interval_s)
        self.ref = ref
        self.make_msg = make_msg
        self.sent = 0
        self.dropped = 0

    async def run(self) -> None:
        next_at = self.clock.now() + self.interval
        while not self.ref.closed:
            await self.clock.sleep_until(next_at)
            if self.ref.tell_nowait(self.make_msg()):
                self.sent += 1
            elif self.ref.closed:
                return
            else:
                self.dropped += 1
            next_at += self.interval
            if (behind := self.clock.now() - next_at) >= timedelta(0):
                next_at += self.interval * (behind // self.interval + 1)
