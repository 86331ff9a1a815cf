"""A/B agent splits: deterministic assignment (across a restart, through the real scheduler and the
simulator over HTTP), the arm as the call's agent, and the per-arm report checked against a scripted
campaign; the confidence interval against published values."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import anyio
import pytest

from actors.clock import SimClock
from speechai.dialing import ab
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import AgentArm, Batch, Job
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
ARMS = [AgentArm(agent_id="agent_a", weight=1), AgentArm(agent_id="agent_b", weight=1)]


def test_wilson_and_newcombe_match_published_values() -> None:
    low, high = ab.wilson(81, 263)  # Newcombe (1998), Stat Med 17:857, example: 0.2553 to 0.3662
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    d, low, high = ab.difference_ci(48, 80, 56, 70)  # 56/70 vs 48/80: 0.2, CI 0.0524 to 0.3339 (method 10)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)


def test_assignment_is_deterministic_weighted_and_validated() -> None:
    arms = [AgentArm(agent_id="x", weight=3), AgentArm(agent_id="y", weight=1)]
    got = Counter(ab.assign_arm("acme", f"person-{i}", arms) for i in range(4000))
    assert 2800 < got["x"] < 3200  # 3:1 by weight
    assert all(ab.assign_arm("acme", f"person-{i}", arms) == ab.assign_arm("acme", f"person-{i}", arms)
               for i in range(100))
    with pytest.raises(ValueError, match="agent_split has 1 arms; allowed 2 to 4"):
        ab.check_split([AgentArm(agent_id="x")])
    with pytest.raises(ValueError, match="weights must be positive"):
        ab.check_split([AgentArm(agent_id="x"), AgentArm(agent_id="y", weight=0)])


def test_verdicts() -> None:
    small = [ab.ArmStats("a", 10, 10, 5, 2, 0), ab.ArmStats("b", 10, 10, 9, 8, 0)]
    assert ab.compare(small)[0].verdict == "not significant yet"
    big = [ab.ArmStats("a", 200, 300, 100, 40, 0), ab.ArmStats("b", 200, 300, 150, 90, 0)]
    assert ab.compare(big)[0].verdict == "b better" and ab.compare(big)[0].low > 0
    same = [ab.ArmStats("a", 200, 300, 100, 60, 0), ab.ArmStats("b", 200, 300, 100, 62, 0)]
    assert ab.compare(same)[0].verdict == "no significant difference"


def phone(i: int) -> str:
    return f"+5697500{i:04d}"


async def test_arms_survive_a_restart_and_the_report_matches_the_script(db, mongo_uri, tmp_path) -> None:
    n = 30
    # every third person promises at once; the others miss the first call and talk without promising
    outcomes = {phone(i): ["success"] if i % 3 == 0 else ["no_answer", "answered"] for i in range(n)}
    people = [Person([phone(i)], {phone(i): outcomes[phone(i)]}) for i in range(n)]
    clock = SimClock(MONDAY_1000, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, people)
        await seed_batch("b1", people, CallSettings(max_attempts=2), clock.now())
        await Batch.get_pymongo_collection().update_one(
            {"_id": "b1"}, {"$set": {"agent_split": [a.model_dump() for a in ARMS]}})
        stop = anyio.Event()

        async def stop_midway() -> None:
            with anyio.fail_after(30):
                while len(sim.dials) < 12:  # noqa: ASYNC110 - the dial log has no event
                    await anyio.sleep(0.01)
            stop.set()

        async with anyio.create_task_group() as tg:  # first process: stopped part-way
            tg.start_soon(stop_midway)
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=4, instance_id="first"),
                               clock, sim, stop=stop, timeout=40)
        first = len(sim.dials)
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=4, instance_id="second"),
                           clock, sim, timeout=40)
        calls = sim.calls
        dials = list(sim.dials)
    assert 12 <= first < len(dials) == n + 2 * n // 3
    jobs = {j.phones[0].number: j for j in await Job.find({"batch_id": "b1"}).to_list()}
    for job in jobs.values():
        assert job.arm == ab.assign_arm("acme", job.person_key, ARMS)
    for d in dials:  # every call, before and after the restart, went to the person's arm
        assert calls[d.call_id]["agent_id"] == jobs[d.to_number].arm
        assert {a.agent_id for a in jobs[d.to_number].attempts} == {jobs[d.to_number].arm}

    stats, [comparison] = await ab.batch_report("b1", ["agent_a", "agent_b"])
    for s in stats:
        mine = [i for i in range(n) if jobs[phone(i)].arm == s.agent_id]
        winners = [i for i in mine if i % 3 == 0]
        assert (s.people, s.successes) == (len(mine), len(winners))
        assert s.attempts == len(winners) + 2 * (len(mine) - len(winners))
        assert s.contacts == len(mine)  # everyone talked in the end
        cost = sum(calls[d.call_id]["call_cost"]["combined_cost"] for d in dials if jobs[d.to_number].arm == s.agent_id)
        assert s.cost_cents == pytest.approx(cost)
        assert s.cost_per_success_cents == pytest.approx(cost / len(winners))
    assert {s.people for s in stats} != {0} and comparison.verdict == "not significant yet"  # 30 people in all


async def test_field_bounds_name_the_field_and_the_value(db) -> None:  # documents need Beanie initialised
    from speechai.dialing.limits import account_errors, batch_errors
    from speechai.store.models import Account, CallerId

    bad = Account(id="a", max_dials_per_second=0, predial_on_error="retry", caller_ids=[CallerId(number="600123")],
                  predial_url="ftp://x", chile_rule_override=" ")
    text = "\n".join(account_errors(bad))
    for needle in ("max_dials_per_second: 0 is not a number from 1 to 1000", "predial_on_error: 'retry'",
                   "caller_ids: '600123' is not an E.164", "predial_url", "chile_rule_override"):
        assert needle in text
    assert account_errors(Account(id="ok")) == []
    batch = Batch(id="b", account_id="a", created_at=MONDAY_1000, use_case="cobranza",
                  agent_split=[AgentArm(agent_id="x")])
    assert [e.split(" ")[0] for e in batch_errors(batch)] == ["use_case", "agent_split"]
