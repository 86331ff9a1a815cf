"""Mailbox bounds, back-pressure, closing, iteration and request/reply."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest

from actors import ActorRef, Mailbox, MailboxClosed, Reply


@dataclass
class Double:
    value: int
    reply: Reply[int]


async def doubler(mailbox: Mailbox[Double]) -> None:
    async for msg in mailbox:
        if msg.value < 0:
            msg.reply.fail(ValueError(f"negative: {msg.value}"))
        else:
            msg.reply.set(msg.value * 2)


async def test_bounded_fifo_and_tell_nowait_when_full() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=2)
    assert mailbox.capacity == 2
    assert mailbox.ref.tell_nowait(1) is True
    assert mailbox.ref.tell_nowait(2) is True
    assert mailbox.ref.tell_nowait(3) is False
    assert len(mailbox) == 2
    assert mailbox.receive_nowait() == 1
    assert mailbox.ref.tell_nowait(4) is True
    assert [await mailbox.receive(), await mailbox.receive()] == [2, 4]
    with pytest.raises(anyio.WouldBlock):
        mailbox.receive_nowait()


async def test_ref_is_stable() -> None:
    mailbox: Mailbox[int] = Mailbox()
    assert mailbox.ref is mailbox.ref
    assert isinstance(mailbox.ref, ActorRef)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Mailbox(capacity=0)


async def test_tell_waits_while_full() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=1)
    await mailbox.ref.tell(1)
    delivered = anyio.Event()

    async def teller() -> None:
        await mailbox.ref.tell(2)
        delivered.set()

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(teller)
            await anyio.wait_all_tasks_blocked()
            assert not delivered.is_set()  # blocked on the full mailbox
            assert await mailbox.receive() == 1
            await delivered.wait()
    assert mailbox.receive_nowait() == 2


async def test_closed_mailbox_refuses_but_drains() -> None:
    mailbox: Mailbox[str] = Mailbox(capacity=3)
    await mailbox.ref.tell("a")
    mailbox.ref.tell_nowait("b")
    mailbox.close()
    assert mailbox.closed and mailbox.ref.closed
    assert mailbox.ref.tell_nowait("c") is False
    with pytest.raises(MailboxClosed):
        await mailbox.ref.tell("c")
    assert await mailbox.receive() == "a"
    assert mailbox.receive_nowait() == "b"
    with pytest.raises(MailboxClosed):
        await mailbox.receive()
    with pytest.raises(MailboxClosed):
        mailbox.receive_nowait()


async def test_close_releases_blocked_teller() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=1)
    mailbox.ref.tell_nowait(1)
    outcome: list[BaseException] = []

    async def teller() -> None:
        try:
            await mailbox.ref.tell(2)
        except MailboxClosed as exc:
            outcome.append(exc)

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(teller)
            await anyio.wait_all_tasks_blocked()
            mailbox.close()
    assert len(outcome) == 1
    assert [m async for m in mailbox] == [1]  # the blocked message was not delivered


async def test_receive_wakes_on_close() -> None:
    mailbox: Mailbox[int] = Mailbox()
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:

            async def closer() -> None:
                await anyio.wait_all_tasks_blocked()
                mailbox.close()

            tg.start_soon(closer)
            with pytest.raises(MailboxClosed):
                await mailbox.receive()


async def test_iteration_ends_on_close() -> None:
    mailbox: Mailbox[int] = Mailbox()
    seen: list[int] = []

    async def consume() -> None:
        async for msg in mailbox:
            seen.append(msg)

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for i in range(5):
                await mailbox.ref.tell(i)
            mailbox.close()
    assert seen == [0, 1, 2, 3, 4]


async def test_ask_round_trip() -> None:
    mailbox: Mailbox[Double] = Mailbox()
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(doubler, mailbox)
            answers = [await mailbox.ref.ask(lambda r, v=v: Double(v, r)) for v in (1, 2, 21)]
            mailbox.close()
    assert answers == [2, 4, 42]


async def test_ask_reraises_failure() -> None:
    mailbox: Mailbox[Double] = Mailbox()
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(doubler, mailbox)
            with pytest.raises(ValueError, match="negative: -1"):
                await mailbox.ref.ask(lambda r: Double(-1, r), timeout=0.5)
            # The actor survives a failed request and keeps answering.
            assert await mailbox.ref.ask(lambda r: Double(5, r), timeout=0.5) == 10
            mailbox.close()


async def test_ask_times_out_without_answer() -> None:
    mailbox: Mailbox[Double] = Mailbox()
    with anyio.fail_after(1), pytest.raises(TimeoutError):
        await mailbox.ref.ask(lambda r: Double(1, r), timeout=0.05)
    assert len(mailbox) == 1  # delivered, never answered


async def test_ask_timeout_covers_full_mailbox() -> None:
    mailbox: Mailbox[Double] = Mailbox(capacity=1)
    mailbox.ref.tell_nowait(Double(0, Reply()))
    with anyio.fail_after(1), pytest.raises(TimeoutError):
        await mailbox.ref.ask(lambda r: Double(1, r), timeout=0.05)
    assert len(mailbox) == 1


async def test_ask_on_closed_mailbox() -> None:
    mailbox: Mailbox[Double] = Mailbox()
    mailbox.close()
    with pytest.raises(MailboxClosed):
        await mailbox.ref.ask(lambda r: Double(1, r), timeout=0.5)


async def test_reply_answers_once() -> None:
    reply: Reply[int] = Reply()
    assert not reply.done
    reply.set(1)
    assert reply.done
    with pytest.raises(RuntimeError):
        reply.set(2)
    with pytest.raises(RuntimeError):
        reply.fail(ValueError())
    assert await reply.wait() == 1
