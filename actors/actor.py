"""An optional base class: an object that owns a mailbox and handles its messages one at a time."""

from __future__ import annotations

from typing import Generic, TypeVar

from actors.mailbox import ActorRef, Mailbox

T = TypeVar("T")


class Actor(Generic[T]):
    """Subclass and implement ``handle``; run ``run`` as a supervised child.

    The mailbox outlives a crash of ``run``, so a restarted actor keeps its address and its queued
    messages (the message being handled when it crashed is lost). ``run`` ends normally once the
    mailbox is closed (``stop``) and drained, so ``RestartPolicy.TRANSIENT`` suits it. When the
    supervisor gives up on the actor, close the mailbox (``on_exit=lambda *_: actor.stop()``) so
    senders get ``MailboxClosed`` instead of waiting on a mailbox nobody reads.
    """

    def __init__(self, capacity: int = 100) -> None:
        self.mailbox: Mailbox[T] = Mailbox(capacity)

    @property
    def ref(self) -> ActorRef[T]:
        return self.mailbox.ref

    async def on_start(self) -> None:
        """Called at every (re)start before the first message; load state here."""

    async def handle(self, msg: T) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        await self.on_start()
        async for msg in self.mailbox:
            await self.handle(msg)

    def stop(self) -> None:
        """Refuse new messages; ``run`` returns after handling those already queued."""
        self.mailbox.close()
