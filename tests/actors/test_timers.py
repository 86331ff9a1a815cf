"""Clock-driven timers: manual clock for exact steps, a fast clock for real-time runs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from actors import Mailbox, SimClock, Ticker, send_after

START = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


async def test_send_after_waits_for_business_time() -> None:
    clock = SimClock(START, speed=0)
    mailbox: Mailbox[str] = Mailbox()
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_after, clock, 5.0, mailbox.ref, "wake")
            await anyio.wait_all_tasks_blocked()
            clock.advance(4.9)
            await anyio.wait_all_tasks_blocked()
            assert len(mailbox) == 0
            clock.advance(0.1)
            assert await mailbox.receive() == "wake"


async def test_send_after_to_closed_mailbox_is_dropped() -> None:
    clock = SimClock(START, speed=0)
    mailbox: Mailbox[str] = Mailbox()
    mailbox.close()
    with anyio.fail_after(1):
        await send_after(clock, 0, mailbox.ref, "late")


async def test_send_after_waits_for_room() -> None:
    clock = SimClock(START, speed=0)
    mailbox: Mailbox[int] = Mailbox(capacity=1)
    mailbox.ref.tell_nowait(1)
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_after, clock, 0, mailbox.ref, 2)
            await anyio.wait_all_tasks_blocked()
            assert await mailbox.receive() == 1
            assert await mailbox.receive() == 2


async def test_send_after_with_fast_clock() -> None:
    clock = SimClock(START, speed=2000)
    mailbox: Mailbox[datetime] = Mailbox()
    with anyio.fail_after(1):
        await send_after(clock, 60, mailbox.ref, START)
    assert clock.now() >= START + timedelta(seconds=60)
    assert mailbox.receive_nowait() == START


async def test_ticker_manual_clock_fixed_schedule_and_skips() -> None:
    clock = SimClock(START, speed=0)
    mailbox: Mailbox[datetime] = Mailbox()
    ticker = Ticker(clock, 10, mailbox.ref, clock.now)
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            await anyio.wait_all_tasks_blocked()
            assert len(mailbox) == 0  # first tick one interval after start
            clock.advance(10)
            assert await mailbox.receive() == START + timedelta(seconds=10)
            clock.advance(9)
            await anyio.wait_all_tasks_blocked()
            assert len(mailbox) == 0
            clock.advance(1)
            assert await mailbox.receive() == START + timedelta(seconds=20)
            clock.advance(35)  # jumps over the ticks at 30, 40 and 50: one message only
            assert await mailbox.receive() == START + timedelta(seconds=55)
            await anyio.wait_all_tasks_blocked()
            assert len(mailbox) == 0
            clock.advance(5)  # the schedule stays on multiples of the interval
            assert await mailbox.receive() == START + timedelta(seconds=60)
            tg.cancel_scope.cancel()
    assert ticker.sent == 4 and ticker.dropped == 0


async def test_ticker_drops_when_full_and_stops_when_closed() -> None:
    clock = SimClock(START, speed=0)
    mailbox: Mailbox[str] = Mailbox(capacity=1)
    ticker = Ticker(clock, 1, mailbox.ref, lambda: "tick")
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            for _ in range(3):
                await anyio.wait_all_tasks_blocked()
                clock.advance(1)
            await anyio.wait_all_tasks_blocked()
            assert (ticker.sent, ticker.dropped) == (1, 2)
            assert len(mailbox) == 1
            mailbox.close()
            clock.advance(1)
        # run() returned by itself: the task group exited without cancellation.
    assert ticker.sent == 1


async def test_ticker_with_fast_clock() -> None:
    clock = SimClock(START, speed=5000)
    mailbox: Mailbox[datetime] = Mailbox()
    ticker = Ticker(clock, 30, mailbox.ref, clock.now)  # 6 ms of real time per tick
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            stamps = [await mailbox.receive() for _ in range(5)]
            tg.cancel_scope.cancel()
    for i, stamp in enumerate(stamps, start=1):
        assert stamp >= START + timedelta(seconds=30 * i)
    assert all(b > a for a, b in itertools.pairwise(stamps))


def test_ticker_rejects_bad_interval() -> None:
    mailbox: Mailbox[str] = Mailbox()
    with pytest.raises(ValueError):
        Ticker(SimClock(START), 0, mailbox.ref, lambda: "x")
