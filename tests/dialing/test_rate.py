"""Dial-rate limit and reserved inbound capacity: calls started per second, measured at the simulator,
never above the account's limit (one instance end to end; two instances sharing the limit through the
database); the outbound share of the account's concurrency."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import anyio
from structlog.testing import capture_logs

from actors.clock import SimClock
from speechai.dialing.rate import DialRateLimiter, outbound_limit, take_token
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, DialRate
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)


def test_outbound_never_uses_the_reserved_inbound_slots() -> None:
    assert outbound_limit(20, 0) == 20
    assert outbound_limit(20, 5) == 15
    assert outbound_limit(3, 5) == 0  # all reserved: no outbound at all
    assert outbound_limit(20, -1) == 20  # a negative reservation reserves nothing


async def test_tokens_of_one_second_are_shared_and_the_ring_slot_is_reused(db) -> None:
    assert [await take_token("acme", 1000, 2) for _ in range(3)] == [True, True, False]
    assert await take_token("acme", 1001, 2)  # the next second has its own tokens
    assert await take_token("acme", 1000 + 64, 2)  # the same ring slot, a later second: taken over
    assert await DialRate.get_pymongo_collection().count_documents({}) == 2  # the ring does not grow


async def test_two_instances_share_the_limit(db) -> None:
    """Two instances' limiters on one database and one business clock: together never above 3 a second."""
    clock = SimClock(MONDAY_1000, speed=10)
    taken: list[datetime] = []

    async def instance() -> None:
        limiter = DialRateLimiter(clock.now, clock.real_seconds)

        async def dial() -> None:
            await limiter.acquire("acme", 3)
            taken.append(clock.now())

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(dial)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(instance)
            tg.start_soon(instance)
    per_second = Counter(int(t.timestamp()) for t in taken)
    assert len(taken) == 24 and max(per_second.values()) <= 3, per_second
    assert len(per_second) >= 8


async def test_calls_started_per_second_at_the_simulator_stay_under_the_limit(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=1)  # real seconds: the guard band covers create-call transit
    people = [Person([f"+5697200{i:04d}"], {f"+5697200{i:04d}": ["busy"]}) for i in range(8)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, ring_s=0.3) as sim:
        script(sim, people)
        await Account(id="acme", max_dials_per_second=2).insert()
        await seed_batch("b1", people, CallSettings(max_attempts=1), clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=12), clock, sim, timeout=60)
        per_second = Counter(int(d.at.timestamp()) for d in sim.dials)
    assert sum(per_second.values()) == 8
    assert max(per_second.values()) <= 2, per_second
    assert len(per_second) >= 4  # 8 dials at 2 a second take at least 4 seconds


async def test_two_running_instances_together_stay_under_the_limit(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=1)  # real seconds: the guard band covers create-call transit
    # enough people that the instance starting second still finds work at 2 dials a second
    people = [Person([f"+5697300{i:04d}"], {f"+5697300{i:04d}": ["busy"]}) for i in range(14)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, ring_s=0.3) as sim:
        script(sim, people)
        await Account(id="acme", max_dials_per_second=2).insert()
        await seed_batch("b1", people, CallSettings(max_attempts=1), clock.now())
        with capture_logs() as logs, anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for name in ("inst-a", "inst-b"):
                    (tmp_path / name).mkdir()
                    # short leases: the heartbeat (a third of one) rebalances the shared slots every second,
                    # so the instance that starts second gets its share within the campaign
                    config = make_config(db, mongo_uri, tmp_path / name, concurrency=4, instance_id=name,
                                         lease_ttl_s=3)
                    tg.start_soon(lambda c=config: run_campaign(db, c, clock, sim, timeout=60))
        per_second = Counter(int(d.at.timestamp()) for d in sim.dials)
        owners = {d.metadata.get("job_id") for d in sim.dials}
    assert sum(per_second.values()) == 14 and len(owners) == 14
    assert {e.get("instance") for e in logs if e["event"] == "call_placed"} == {"inst-a", "inst-b"}
    assert max(per_second.values()) <= 2, per_second


async def test_reserved_inbound_slots_are_never_used_by_outbound(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    people = [Person([f"+5697600{i:04d}"], {f"+5697600{i:04d}": ["success"]}) for i in range(10)]
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, people)
        await Account(id="acme", max_concurrent_calls=4, reserved_inbound_calls=1).insert()
        await seed_batch("b1", people, CallSettings(max_attempts=1), clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=20), clock, sim, timeout=60)
        assert len(sim.dials) == 10
        assert sim.peak_live_calls == 3  # 4 of the account's provider concurrency, 1 kept for inbound
