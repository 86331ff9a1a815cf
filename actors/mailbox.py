"""Bounded mailboxes, the references that send to them, and request/reply.

A ``Mailbox`` belongs to one receiving actor; anyone holding its ``ActorRef`` may send. The buffer is
bounded so a slow actor pushes back on its senders instead of growing without limit.

Closing a mailbox stops new messages at once: ``tell`` raises ``MailboxClosed``, senders blocked on
a full mailbox are released with ``MailboxClosed`` (their message is not delivered), and the owner
may still drain what was already buffered before ``receive`` raises ``MailboxClosed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

T = TypeVar("T")
R = TypeVar("R")


class MailboxClosed(Exception):
    """The mailbox no longer accepts messages (send side) or is closed and drained (receive side)."""


class Reply(Generic[R]):
    """A one-shot answer slot carried inside an ``ask`` message; the receiving actor fills it once."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._value: R | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def set(self, value: R) -> None:
        self._settle()
        self._value = value
        self._done.set()

    def fail(self, exc: BaseException) -> None:
        self._settle()
        self._error = exc
        self._done.set()

    def _settle(self) -> None:
        # Answering twice is a bug in the actor; the asker has already seen the first answer.
        if self._done.is_set():
            raise RuntimeError("reply already given")

    async def wait(self) -> R:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class ActorRef(Generic[T]):
    """The sending side of a mailbox. Cheap to pass around; all refs of a mailbox share one stream."""

    __slots__ = ("_send",)

    def __init__(self, send: MemoryObjectSendStream[T]) -> None:
        self._send = send

    @property
    def closed(self) -> bool:
        """True once the mailbox was closed by its owner; messages can no longer be delivered."""
        stats = self._send.statistics()
        return stats.open_send_streams == 0 or stats.open_receive_streams == 0

    async def tell(self, msg: T) -> None:
        """Send ``msg``, waiting while the mailbox is full (back-pressure)."""
        try:
            await self._send.send(msg)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise MailboxClosed from None

    def tell_nowait(self, msg: T) -> bool:
        """Send ``msg`` if there is room; False when the mailbox is full or closed."""
        try:
            self._send.send_nowait(msg)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True

    async def ask(
        self,
        make_msg: Callable[[Reply[R]], T],
        timeout: float | None = None,  # noqa: ASYNC109 - a per-request timeout is the point of ask
    ) -> R:
        """Send the message built around a fresh ``Reply`` and wait for the answer.

        ``timeout`` (real seconds) covers both waiting for room and waiting for the answer; on expiry
        ``TimeoutError`` is raised. An exception given to ``reply.fail`` is re-raised here. An actor
        that dies without answering leaves the asker waiting, so pass a timeout across actors that
        may crash.
        """
        reply: Reply[R] = Reply()
        msg = make_msg(reply)
        with anyio.fail_after(timeout):
            await self.tell(msg)
            return await reply.wait()


class Mailbox(Generic[T]):
    """A bounded FIFO of messages for one receiving actor."""

    __slots__ = ("_receive", "_ref", "_send")

    def __init__(self, capacity: int = 100) -> None:
        if capacity < 1:
            # Zero would make every tell a rendezvous and tell_nowait always fail with no receiver.
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        send, receive = anyio.create_memory_object_stream[T](capacity)
        self._send: MemoryObjectSendStream[T] = send
        self._receive: MemoryObjectReceiveStream[T] = receive
        self._ref: ActorRef[T] = ActorRef(send)

    @property
    def ref(self) -> ActorRef[T]:
        return self._ref

    @property
    def capacity(self) -> int:
        return int(self._send.statistics().max_buffer_size)

    @property
    def closed(self) -> bool:
        return self._ref.closed

    def __len__(self) -> int:
        """Messages buffered and not yet received."""
        return self._receive.statistics().current_buffer_used

    async def receive(self) -> T:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise MailboxClosed from None

    def receive_nowait(self) -> T:
        """Next buffered message; ``anyio.WouldBlock`` when empty, ``MailboxClosed`` if closed and drained."""
        try:
            return self._receive.receive_nowait()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise MailboxClosed from None

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except MailboxClosed:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Refuse new messages; what is already buffered can still be received."""
        self._send.close()
