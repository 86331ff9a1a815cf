"""SimClock and RealClock: speed, manual advance, sleepers, deadlines in the past."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from actors import Clock, RealClock, SimClock, utc

START = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def test_clocks_satisfy_protocol() -> None:
    assert isinstance(RealClock(), Clock)
    assert isinstance(SimClock(START), Clock)


def test_naive_start_is_utc_and_manual_clock_stands_still() -> None:
    clock = SimClock(datetime(2025, 3, 3, 12, 0))
    assert clock.now() == START
    assert clock.now().tzinfo is not None
    assert utc(datetime(2025, 3, 3, 9, 0, tzinfo=UTC)) == datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    assert clock.real_seconds(10) == math.inf


def test_negative_speed_rejected() -> None:
    with pytest.raises(ValueError):
        SimClock(START, speed=-1)
    clock = SimClock(START)
    with pytest.raises(ValueError):
        clock.speed = -1


def test_advance_and_advance_to() -> None:
    clock = SimClock(START)
    clock.advance(90)
    assert clock.now() == START + timedelta(seconds=90)
    clock.advance(-5)  # never backwards
    assert clock.now() == START + timedelta(seconds=90)
    clock.advance_to(START + timedelta(hours=1))
    assert clock.now() == START + timedelta(hours=1)
    clock.advance_to(START)
    assert clock.now() == START + timedelta(hours=1)


async def test_speed_runs_business_time_faster() -> None:
    clock = SimClock(START, speed=1000)
    assert clock.real_seconds(50) == pytest.approx(0.05)
    before = anyio.current_time()
    with anyio.fail_after(1):
        await clock.sleep(50)
    elapsed = anyio.current_time() - before
    assert clock.now() >= START + timedelta(seconds=50)
    assert elapsed >= 0.04  # 50 business seconds took real time, scaled by the speed


async def test_changing_speed_keeps_elapsed_time() -> None:
    clock = SimClock(START, speed=1000)
    await anyio.sleep(0.02)
    reached = clock.now()
    assert reached >= START + timedelta(seconds=20)
    clock.speed = 0  # freeze: time must stay where it got, not be rescaled to zero
    assert clock.speed == 0
    assert reached <= clock.now() < reached + timedelta(seconds=5)
    frozen = clock.now()
    await anyio.sleep(0.01)
    assert clock.now() == frozen


async def test_speed_change_wakes_sleeper() -> None:
    clock = SimClock(START, speed=0)
    woke = anyio.Event()

    async def sleeper() -> None:
        await clock.sleep(10)
        woke.set()

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await anyio.wait_all_tasks_blocked()
            clock.speed = 1000  # 10 ms of real time left
            await woke.wait()
    assert clock.now() >= START + timedelta(seconds=10)


async def test_advance_wakes_sleepers_only_when_due() -> None:
    clock = SimClock(START, speed=0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "short", 10)
            tg.start_soon(sleeper, "long", 60)
            await anyio.wait_all_tasks_blocked()
            clock.advance(9)
            await anyio.wait_all_tasks_blocked()
            assert woke == []
            clock.advance(1)
            await anyio.wait_all_tasks_blocked()
            assert woke == ["short"]
            clock.advance(100)
    assert woke == ["short", "long"]


async def test_sleep_until_past_returns_at_once() -> None:
    clock = SimClock(START, speed=0)  # would block forever if it waited
    with anyio.fail_after(0.5):
        await clock.sleep_until(START - timedelta(hours=1))
        await clock.sleep_until(START)
        await clock.sleep(0)
        await clock.sleep(-3)
        await RealClock().sleep_until(datetime(2000, 1, 1, tzinfo=UTC))
    assert clock.now() == START


async def test_sleep_until_naive_deadline_is_utc() -> None:
    clock = SimClock(START, speed=0)
    with anyio.fail_after(1):
        async with anyio.create_task_group() as tg:

            async def mover() -> None:
                await anyio.wait_all_tasks_blocked()
                clock.advance(3600)

            tg.start_soon(mover)
            await clock.sleep_until(datetime(2025, 3, 3, 13, 0))
    assert clock.now() == START + timedelta(hours=1)


async def test_real_clock() -> None:
    clock = RealClock()
    assert clock.now().tzinfo is UTC
    assert clock.real_seconds(2.5) == 2.5
    before = clock.now()
    await clock.sleep(0.01)
    assert clock.now() - before >= timedelta(seconds=0.009)
