"""Group commit: concurrent submitters share one flush, each gets its own result or the flush's error."""

from __future__ import annotations

import anyio
import pytest

from actors.batcher import Batcher


async def test_concurrent_submits_share_one_flush_and_get_their_own_results() -> None:
    seen: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        seen.append(list(items))
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(flush)
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await batcher.submit(i)

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
    assert results == {i: i * 10 for i in range(50)}
    assert len(seen) < 50 and sorted(x for batch in seen for x in batch) == list(range(50))


async def test_a_lone_submit_is_flushed_alone() -> None:
    batcher: Batcher[str, str] = Batcher(lambda items: _echo(items))
    assert await batcher.submit("a") == "a"
    assert await batcher.submit("b") == "b"
    assert batcher.flushes == 2


async def _echo(items: list[str]) -> list[str]:
    return items


async def test_every_caller_of_a_failed_round_sees_the_error() -> None:
    async def flush(items: list[int]) -> list[int]:
        raise ConnectionError("database away")

    batcher: Batcher[int, int] = Batcher(flush)
    errors: list[BaseException] = []

    async def one(i: int) -> None:
        try:
            await batcher.submit(i)
        except ConnectionError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    assert len(errors) == 5


async def test_max_items_starts_a_new_round() -> None:
    sizes: list[int] = []

    async def flush(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher: Batcher[int, int] = Batcher(flush, max_items=4)
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(batcher.submit, i)
    assert max(sizes) <= 4 and sum(sizes) == 10


async def test_a_cancelled_leader_still_flushes_for_the_others() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        await anyio.sleep(0.05)
        flushed.append(items)
        return items

    batcher: Batcher[int, int] = Batcher(flush, window_s=0.01)
    got: list[int] = []

    async def follower() -> None:
        await anyio.sleep(0.001)
        got.append(await batcher.submit(2))

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as leader_scope:
            tg.start_soon(follower)
            leader_scope.cancel()
            with pytest.raises(anyio.get_cancelled_exc_class()):
                await batcher.submit(1)
                await anyio.sleep(1)  # reached only if the shielded flush let cancellation through late
    assert got == [2] and flushed == [[1, 2]]


@pytest.mark.parametrize("serial", [False, True])
async def test_serial_flushes_one_at_a_time_and_callers_meanwhile_share_the_next(serial: bool) -> None:
    running, most, seen = 0, 0, []

    async def flush(items: list[int]) -> list[int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        seen.append(list(items))
        await anyio.sleep(0.05)  # a slow read: callers keep arriving meanwhile
        running -= 1
        return items

    batcher: Batcher[int, int] = Batcher(flush, serial=serial)
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await batcher.submit(i)

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, i)
            await anyio.sleep(0.01)  # one caller every 10 ms, five per flush
    assert results == {i: i for i in range(20)}
    assert sorted(x for round_ in seen for x in round_) == list(range(20))
    if serial:
        assert most == 1 and len(seen) <= 6  # about one round per 50 ms, the first alone
        assert max(len(r) for r in seen) >= 4
    else:
        assert most > 1 and len(seen) == 20  # each caller its own flush, overlapping


def test_a_flush_left_over_from_an_event_loop_that_is_gone_does_not_hold_up_the_next() -> None:
    import asyncio

    stuck = [True]

    async def flush(items: list[int]) -> list[int]:
        if stuck[0]:
            await asyncio.sleep(3600)  # never ends: its event loop is closed under it
        return items

    batcher: Batcher[int, int] = Batcher(flush, serial=True)
    old = asyncio.new_event_loop()

    pending: list[asyncio.Future[int]] = []

    async def start() -> None:
        pending.append(asyncio.ensure_future(batcher.submit(1)))
        await asyncio.sleep(0.01)  # the flush is under way

    old.run_until_complete(start())
    old.close()  # as a test's event loop ends with a module-level batcher mid-flush

    async def next_loop() -> int:
        stuck[0] = False  # a working database this time
        with anyio.fail_after(2):
            return await batcher.submit(2)

    assert anyio.run(next_loop) == 2
