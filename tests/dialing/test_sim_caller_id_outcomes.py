"""The simulator's caller-ID outcomes (``marked_as_spam``, ``network_blocked``): drawn from rates, scripted
per person, or scripted per from-number; a flagged number is rested through the real scheduler and
every person is reached from the other number, no phone marked bad."""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from structlog.testing import capture_logs

from actors.clock import SimClock
from speechai.dialing import caller_ids
from speechai.domain.settings import CallSettings
from speechai.retell.sim_outcomes import OutcomeRates, plan_call
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Batch, CallerId, CallerIdRest, Job, JobState
from tests.dialing.conftest import SCL
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
A, B = "+566001000001", "+566001000002"


@pytest.mark.parametrize("outcome", ["marked_as_spam", "network_blocked"])
def test_the_outcomes_never_connect_and_carry_their_reason(outcome: str) -> None:
    plan = plan_call(outcome, random.Random(1), now=MONDAY_1000, dynamic_variables={})
    assert not plan.connected and plan.disconnection_reason == outcome and plan.talk_s == 0
    rates = OutcomeRates.parse(f"{outcome}=1")
    assert {rates.draw(random.Random(i)) for i in range(5)} == {outcome}


def test_flagging_takes_only_caller_id_outcomes() -> None:
    sim = RetellSimulator(api_key=API_KEY, clock=SimClock(MONDAY_1000))
    with pytest.raises(ValueError, match="marked_as_spam, network_blocked"):
        sim.flag_caller_id(A, "no_answer")


@pytest.mark.parametrize("outcome", ["network_blocked", "marked_as_spam"])
async def test_a_flagged_from_number_is_rested_and_everyone_is_reached_from_the_other(db, mongo_uri, tmp_path,
                                                                                     outcome) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    phones = [f"+5697100002{i}" for i in range(4)]
    people = [Person([p], {p: ["success"]}) for p in phones]
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, people)
        sim.flag_caller_id(A, outcome)  # the carrier's verdict on our number, whoever it calls
        await seed_batch("b1", people, CallSettings(), clock.now())
        await Batch.get_pymongo_collection().update_one(
            {"_id": "b1"}, {"$set": {"caller_ids": [CallerId(number=A).model_dump(), CallerId(number=B).model_dump()]}})
        with capture_logs() as logs:
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=1), clock, sim, timeout=60)
        dials = [(d.to_number, d.from_number) for d in sim.dials]
    assert dials[0] == (phones[0], A)  # the least used number first: the pool's first
    assert all(f == B for _, f in dials[1:]) and sorted(t for t, _ in dials[1:]) == phones
    rest = await CallerIdRest.get(f"acme:{A}:2026-03-02")
    assert rest is not None and rest.reason == outcome
    assert [e["from_number"] for e in logs if e["event"] == "caller_id_rested"] == [A]
    jobs = await Job.find({"batch_id": "b1"}).to_list()
    assert {j.state for j in jobs} == {JobState.DONE} and not [p for j in jobs for p in j.phones if p.bad]
    assert [r.number for r in await caller_ids.rested_on("acme", "2026-03-02")] == [A]
