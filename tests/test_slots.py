"""Concurrency slots shared across instances: atomic, leased, released, renewed."""

from __future__ import annotations

import asyncio

from speechai.store import slots

NOW = 1_000_000


async def test_no_more_holders_than_slots_under_concurrency(db) -> None:
    await slots.ensure_slots("global", 3)
    await slots.ensure_slots("global", 3)  # idempotent: a second instance ensures the same slots
    won = await asyncio.gather(*(slots.acquire("global", 3, f"job{i}", f"inst{i % 2}", NOW + 30_000, NOW)
                                 for i in range(10)))
    assert sum(won) == 3
    assert await slots.held("global", NOW) == 3


async def test_expired_slot_is_taken_again_and_release_frees_it(db) -> None:
    await slots.ensure_slots("account:a", 1)
    assert await slots.acquire("account:a", 1, "job1", "dead", NOW + 1_000, NOW)
    assert not await slots.acquire("account:a", 1, "job2", "me", NOW + 31_000, NOW + 500)
    assert await slots.acquire("account:a", 1, "job2", "me", NOW + 31_000, NOW + 1_001)  # lease ran out
    await slots.release("job2")
    assert await slots.acquire("account:a", 1, "job3", "me", NOW + 31_000, NOW + 1_002)


async def test_a_lower_limit_uses_only_the_first_slots(db) -> None:
    await slots.ensure_slots("global", 5)
    won = [await slots.acquire("global", 2, f"j{i}", "me", NOW + 30_000, NOW) for i in range(4)]
    assert won == [True, True, False, False]


async def test_renew_extends_only_the_owners_holders(db) -> None:
    await slots.ensure_slots("global", 2)
    assert await slots.acquire("global", 2, "mine", "me", NOW + 1_000, NOW)
    assert await slots.acquire("global", 2, "theirs", "other", NOW + 1_000, NOW)
    await slots.renew("me", ["mine", "theirs"], NOW + 60_000)
    assert await slots.held("global", NOW + 30_000) == 1
    await slots.rename_holder("mine", "renamed")
    await slots.release("renamed")
    assert await slots.held("global", NOW) == 1
