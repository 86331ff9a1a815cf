"""The Actor base class under a supervisor: serial handling, ask, restart keeps the mailbox."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest

from actors import Actor, Backoff, MailboxClosed, Reply, RestartPolicy, Supervisor


@dataclass
class Add:
    amount: int


@dataclass
class Total:
    reply: Reply[int]


class Counter(Actor[Add | Total]):
    def __init__(self) -> None:
        super().__init__(capacity=10)
        self.total = 0
        self.starts = 0

    async def on_start(self) -> None:
        self.starts += 1

    async def handle(self, msg: Add | Total) -> None:
        match msg:
            case Add(amount) if amount < 0:
                raise ValueError("negative amount")
            case Add(amount):
                self.total += amount
            case Total(reply):
                reply.set(self.total)


class Quiet:
    def info(self, event: str, **kw: object) -> None: ...
    def warning(self, event: str, **kw: object) -> None: ...
    def error(self, event: str, **kw: object) -> None: ...


async def test_actor_handles_in_order_and_answers() -> None:
    counter = Counter()
    exits: list[tuple[str, BaseException | None]] = []
    with anyio.fail_after(1):
        async with Supervisor("root", logger=Quiet()) as sup:
            sup.start_child(
                "counter", counter.run, policy=RestartPolicy.TRANSIENT, on_exit=lambda *a: exits.append(a)
            )
            for n in (1, 2, 3):
                await counter.ref.tell(Add(n))
            assert await counter.ref.ask(Total, timeout=0.5) == 6
            counter.stop()
    assert exits == [("counter", None)]
    with pytest.raises(MailboxClosed):
        await counter.ref.tell(Add(1))


async def test_restarted_actor_keeps_mailbox_and_state() -> None:
    counter = Counter()
    with anyio.fail_after(1):
        async with Supervisor("root", logger=Quiet()) as sup:
            handle = sup.start_child(
                "counter", counter.run, policy=RestartPolicy.TRANSIENT, backoff=Backoff(initial=0.001)
            )
            await counter.ref.tell(Add(5))
            await counter.ref.tell(Add(-1))  # crashes the actor
            await counter.ref.tell(Add(7))  # queued meanwhile, handled after the restart
            assert await counter.ref.ask(Total, timeout=0.5) == 12
            assert handle.restarts == 1 and counter.starts == 2
            assert isinstance(handle.last_error, ValueError)
            counter.stop()
