"""RightOfWay: ordinary work waits while urgent work is held, until the last holder lets go or its
bounded wait runs out."""

from __future__ import annotations

import anyio

from actors.right_of_way import RightOfWay


async def test_nothing_held_gives_way_at_once() -> None:
    way = RightOfWay()
    with anyio.fail_after(1.0):
        await way.give_way(30.0)
    assert way.waits == 0 and not way.held


async def test_ordinary_work_goes_after_the_last_holder_lets_go() -> None:
    way = RightOfWay()
    order: list[str] = []
    way.hold("a")
    way.hold("b")

    async def ordinary() -> None:
        await way.give_way(30.0)
        order.append("ordinary")

    async with anyio.create_task_group() as tg:
        tg.start_soon(ordinary)
        await anyio.sleep(0.02)
        way.let_go("a")
        await anyio.sleep(0.02)
        assert order == []  # "b" still holds
        order.append("urgent b done")
        way.let_go("b")
    assert order == ["urgent b done", "ordinary"]
    assert way.waits == 1 and not way.held


async def test_letting_go_twice_or_unknown_keys_changes_nothing() -> None:
    way = RightOfWay()
    way.hold("a")
    assert way.holds("a") and not way.holds("b")
    way.let_go("a")
    way.let_go("a")
    way.let_go("never held")
    assert not way.held
    way.hold("a")
    way.hold("a")  # one key, one hold
    way.let_go("a")
    assert not way.held


async def test_a_holder_that_never_lets_go_delays_ordinary_work_only_up_to_its_bound() -> None:
    way = RightOfWay()
    way.hold("stuck")
    started = anyio.current_time()
    await way.give_way(0.1)
    waited = anyio.current_time() - started
    assert 0.09 <= waited < 1.0
    assert way.held  # still held: the bound does not release it


async def test_work_held_again_after_a_clear_makes_later_ordinary_work_wait_again() -> None:
    way = RightOfWay()
    way.hold("a")
    way.let_go("a")
    way.hold("b")
    done = False

    async def ordinary() -> None:
        nonlocal done
        await way.give_way(30.0)
        done = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(ordinary)
        await anyio.sleep(0.02)
        assert not done
        way.let_go("b")
    assert done
