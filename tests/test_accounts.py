"""Account money and daily limits under concurrency, against the real server: never overspent."""

from __future__ import annotations

import asyncio

from speechai.store import accounts
from speechai.store.models import Account, Plan


async def test_concurrent_reservations_never_overspend(db) -> None:
    await Account(id="acme", plan=Plan.CREDITS, balance_cents=100).insert()
    won = await asyncio.gather(*(accounts.reserve("acme", Plan.CREDITS, 30, 0) for _ in range(10)))
    assert sum(won) == 3
    acme = await Account.get("acme")
    assert (acme.balance_cents, acme.reserved_cents) == (10, 90)


async def test_settle_refunds_the_unused_part_and_records_the_spend(db) -> None:
    await Account(id="acme", plan=Plan.CREDITS, balance_cents=100).insert()
    assert await accounts.reserve("acme", Plan.CREDITS, 60, 0)
    await accounts.settle("acme", reserved_cents=60, reserved_ms=0, delta_cents=60 - 23, delta_ms=0, cost_cents=22.4)
    acme = await Account.get("acme")
    assert (acme.balance_cents, acme.reserved_cents, acme.spent_cents) == (77, 0, 22)


async def test_minutes_plan_reserves_milliseconds(db) -> None:
    await Account(id="m", plan=Plan.MINUTES, minutes_balance_ms=600_000).insert()
    assert await accounts.reserve("m", Plan.MINUTES, 0, 600_000)
    assert not await accounts.reserve("m", Plan.MINUTES, 0, 1)
    assert (await Account.get("m")).reserved_ms == 600_000


async def test_unlimited_plan_always_admits_and_holds_nothing(db) -> None:
    await Account(id="u").insert()
    assert await accounts.reserve("u", Plan.UNLIMITED, 500, 0)
    assert (await Account.get("u")).reserved_cents == 0


async def test_top_up_lifts_a_suspension(db) -> None:
    await Account(id="acme", plan=Plan.CREDITS, suspended_reason="out of credit").insert()
    assert await accounts.top_up("acme", cents=500)
    acme = await Account.get("acme")
    assert acme.balance_cents == 500 and acme.suspended_reason is None
    assert not await accounts.top_up("nobody", cents=1)


async def test_daily_counter_admits_exactly_its_limit_under_concurrency(db) -> None:
    won = await asyncio.gather(*(accounts.take_daily("account:acme:2026-03-02", 5) for _ in range(20)))
    assert sum(won) == 5
    await accounts.give_back_daily("account:acme:2026-03-02")
    assert await accounts.take_daily("account:acme:2026-03-02", 5)
    assert not await accounts.take_daily("account:acme:2026-03-02", 5)
    assert await accounts.take_daily("account:acme:2026-03-03", 5)  # a new day starts from zero
