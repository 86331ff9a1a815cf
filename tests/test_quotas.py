"""Concurrency shared by instances as leased blocks: never more than the limit between owners, a dead
owner's grant expires, shutdown hands it back; the keeper takes and frees slots in memory."""

from __future__ import annotations

import asyncio

from speechai.runtime.quota_keeper import QuotaKeeper
from speechai.store import quotas

NOW = 1_800_000_000_000


async def test_concurrent_owners_never_hold_more_than_the_limit(db) -> None:
    got = await asyncio.gather(*(quotas.set_grant("account:a", f"inst{i}", want=3, keep=0, limit=5,
                                                  until_ms=NOW + 30_000, now_ms=NOW) for i in range(6)))
    ns = [g.n for g in got]
    assert sum(ns) <= 5 and max(ns) <= 3
    assert await quotas.held("account:a", NOW) == sum(ns)


async def test_a_dead_owners_grant_expires_and_is_granted_again(db) -> None:
    assert (await quotas.set_grant("account:a", "dead", want=2, keep=0, limit=2, until_ms=NOW + 1_000,
                                  now_ms=NOW)).n == 2
    assert (await quotas.set_grant("account:a", "alive", want=2, keep=0, limit=2, until_ms=NOW + 31_000,
                                  now_ms=NOW + 500)).n == 0
    # the dead instance stopped renewing: after its lease the slots are free again
    assert (await quotas.set_grant("account:a", "alive", want=2, keep=0, limit=2, until_ms=NOW + 32_000,
                                  now_ms=NOW + 1_001)).n == 2


async def test_keep_counts_calls_that_exist_whatever_the_limit(db) -> None:
    await quotas.set_grant("account:a", "other", want=1, keep=0, limit=1, until_ms=NOW + 30_000, now_ms=NOW)
    assert (await quotas.set_grant("account:a", "me", want=1, keep=1, limit=1, until_ms=NOW + 30_000,
                                  now_ms=NOW)).n == 1
    assert await quotas.held("account:a", NOW) == 2  # over the limit: no new dial until it drops


async def test_drop_grants_frees_an_owners_slots_at_once(db) -> None:
    await quotas.set_grant("account:a", "me", want=2, keep=0, limit=2, until_ms=NOW + 30_000, now_ms=NOW)
    await quotas.set_grant("global", "me", want=1, keep=0, limit=4, until_ms=NOW + 30_000, now_ms=NOW)
    await quotas.drop_grants("me")
    assert await quotas.held("account:a", NOW) == 0 and await quotas.held("global", NOW) == 0


async def test_keeper_takes_in_memory_within_its_block_and_two_keepers_share_the_limit(db) -> None:
    now = [NOW]
    a = QuotaKeeper("a", lambda: now[0] + 30_000, lambda: now[0])
    b = QuotaKeeper("b", lambda: now[0] + 30_000, lambda: now[0])
    took_a = [await a.take("account:x", 3) for _ in range(3)]
    assert took_a == [True, True, True]
    assert not await b.take("account:x", 3)  # a holds all three
    a.free("account:x")
    await a.trim()  # a has not seen anyone wait yet: it keeps the slot (no write per call when alone)
    assert await quotas.held("account:x", now[0]) == 3
    await a.renew()  # the heartbeat's write sees b waiting: a shrinks to what it uses
    assert await quotas.held("account:x", now[0]) == 2
    assert await b.take("account:x", 3)
    a.free("account:x")
    await a.trim()  # contended now: handed back at once
    assert await quotas.held("account:x", now[0]) == 2
    assert await b.take("account:x", 3)
    assert not await a.take("account:x", 3)  # a fair share while b waited: b got the freed slot
    assert a.in_use("account:x") == 1 and b.in_use("account:x") == 2


async def test_a_resumed_call_is_counted_even_past_the_limit(db) -> None:
    k = QuotaKeeper("a", lambda: NOW + 30_000, lambda: NOW)
    other = QuotaKeeper("b", lambda: NOW + 30_000, lambda: NOW)
    assert await other.take("account:x", 1)
    assert not await k.take("account:x", 1)
    assert await k.take("account:x", 1, force=True)
    assert k.in_use("account:x") == 1


async def test_a_waiting_instance_holds_the_others_to_a_fair_share(db) -> None:
    """An instance that got nothing is recorded as waiting; the holder cannot grow back past half of the
    limit after handing slots back, so the waiting one gets them."""
    until, limit = NOW + 30_000, 4
    assert (await quotas.set_grant("global", "a", want=4, keep=0, limit=limit, until_ms=until, now_ms=NOW)).n == 4
    assert (await quotas.set_grant("global", "b", want=1, keep=0, limit=limit, until_ms=until, now_ms=NOW)).n == 0
    # a's calls end: it shrinks to what it uses, then asks for more again
    assert (await quotas.set_grant("global", "a", want=1, keep=1, limit=limit, until_ms=until, now_ms=NOW)).n == 1
    assert (await quotas.set_grant("global", "a", want=4, keep=1, limit=limit, until_ms=until, now_ms=NOW)).n == 2
    assert (await quotas.set_grant("global", "b", want=2, keep=0, limit=limit, until_ms=until, now_ms=NOW)).n == 2
    assert await quotas.held("global", NOW) == 4


async def test_a_heartbeat_renewal_never_hands_back_a_slot_a_concurrent_take_gave_to_a_call(db) -> None:
    """The heartbeat and the scheduler write the same grant: a renewal computed before a take's write
    must not land after it (the database would show the slot free while a call uses it)."""
    import anyio

    k = QuotaKeeper("a", lambda: NOW + 30_000, lambda: NOW)
    for _ in range(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(k.renew)
            tg.start_soon(k.take, "global", 5)
            tg.start_soon(k.renew)
        assert await quotas.held("global", NOW) >= k.in_use("global"), "a call's slot is free in the database"
        if k.in_use("global") >= 5:
            for _ in range(5):
                k.free("global")
            await k.renew()


async def test_take_nowait_uses_only_the_granted_block_and_yields_to_a_waiting_instance(db) -> None:
    """The handover of a freed line: a slot out of what is already granted, never a write; none when
    the block is used up, past a lowered limit, or another instance waits (the pass trims first)."""
    a = QuotaKeeper("a", lambda: NOW + 30_000, lambda: NOW)
    b = QuotaKeeper("b", lambda: NOW + 30_000, lambda: NOW)
    assert not a.take_nowait("account:x", 3)  # nothing granted yet: that needs the database
    assert await a.take("account:x", 3) and await a.take("account:x", 3) and await a.take("account:x", 3)
    assert not a.take_nowait("account:x", 3)  # the block is in use
    a.free("account:x")
    held = await quotas.held("account:x", NOW)
    assert a.take_nowait("account:x", 3) and a.in_use("account:x") == 3
    assert await quotas.held("account:x", NOW) == held  # no write
    a.free("account:x")
    assert not a.take_nowait("account:x", 2)  # the limit was lowered below what is granted
    assert not await b.take("account:x", 3)  # b waits: recorded on the grant
    await a.renew()  # a learns of it (and keeps the two it uses)
    a.free("account:x")  # one slot of the block is free again, but b waits for it
    assert not a.take_nowait("account:x", 3)
    assert a.in_use("account:x") == 1


async def test_take_many_takes_a_block_in_one_write_within_the_limit_or_all_when_forced(db) -> None:
    from speechai.store.models import Quota

    a = QuotaKeeper("a", lambda: NOW + 30_000, lambda: NOW)
    b = QuotaKeeper("b", lambda: NOW + 30_000, lambda: NOW)
    assert await b.take_many("account:x", 10, 4) == 4
    before = (await Quota.get_pymongo_collection().find_one({"_id": "account:x"}))["version"]
    assert await a.take_many("account:x", 10, 8) == 5  # what b (4 in use, 1 spare) leaves of the limit
    after = (await Quota.get_pymongo_collection().find_one({"_id": "account:x"}))["version"]
    assert after == before + 1  # one grant write for the five
    assert await a.take_many("account:x", 10, 3, force=True) == 3  # re-adopted calls: they exist anyway
    assert a.in_use("account:x") == 8 and await quotas.held("account:x", NOW) == 13  # b's 5 and a's 8
    assert await a.take_many("account:x", 10, 0) == 0
