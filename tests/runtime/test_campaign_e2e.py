"""End to end: the real runtime, the embedded MongoDB server and the Retell simulator over HTTP."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from actors.clock import SimClock
from speechai.domain.settings import CallSettings, HourRange, RetryDelays
from speechai.domain.windows import is_dialable
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Batch, BatchStatus, CallRecord, Job, JobState
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_0850 = datetime(2026, 3, 2, 8, 50, tzinfo=SCL)  # before the 09:00 window opens

SETTINGS = CallSettings(
    max_attempts=3,
    allowed_hours=[HourRange(start=time(9), end=time(13)), HourRange(start=time(15), end=time(19))],
    days_of_week=[1, 2, 3, 4, 5],
    retry_delay_min=RetryDelays(no_answer=60, voicemail=120, conversation=240, provider_error=30, capacity=2),
)


@pytest.fixture
async def sim_clock():
    return SimClock(MONDAY_0850, speed=600)


@pytest.fixture
async def sim(sim_clock):
    async with RetellSimulator(api_key=API_KEY, clock=sim_clock, seed=3) as s:
        yield s


def dials_to(sim: RetellSimulator, phone: str):
    return [d for d in sim.dials if d.to_number == phone]


async def test_batch_reaches_final_states(db, mongo_uri, tmp_path, sim, sim_clock) -> None:
    people = [
        Person(["+56911111111"], {"+56911111111": ["success"]}),
        Person(["+56922222222"], {"+56922222222": ["no_answer", "success"]}),
        Person(["+56933333333", "+56933333334"], {"+56933333333": ["invalid_number"],
                                                  "+56933333334": ["success"]}),
        Person(["+56944444444"], {"+56944444444": ["voicemail"]}),
        Person(["+56955555555"], {"+56955555555": ["invalid_number"]}),
    ]
    script(sim, people)
    jobs = await seed_batch("b1", people, SETTINGS, MONDAY_0850)
    await run_campaign(db, make_config(db, mongo_uri, tmp_path), sim_clock, sim)

    final = {j.id: await Job.get(j.id) for j in jobs}
    states = [final[j.id].state for j in jobs]
    assert states == [JobState.DONE, JobState.DONE, JobState.DONE, JobState.FAILED, JobState.FAILED]
    # voicemail is never a success and is retried up to max_attempts
    vm = final[jobs[3].id]
    assert [a.outcome for a in vm.attempts] == ["voicemail"] * 3 and vm.attempts_counted == 3
    # a bad number moves to the next phone at once; the bad phone is marked and not redialed
    rotated = final[jobs[2].id]
    assert [a.phone for a in rotated.attempts] == ["+56933333333", "+56933333334"]
    assert rotated.phones[0].bad and not rotated.phones[1].bad
    assert len(dials_to(sim, "+56933333333")) == 1
    # the only phone bad → failed with that reason
    assert "phone" in (final[jobs[4].id].last_reason or "")
    # every placed attempt has its provider payload, cost in cents and duration stored
    for job in final.values():
        for a in job.attempts:
            assert a.call_id is not None
            rec = await CallRecord.find_one({"call_id": a.call_id})
            assert rec is not None and rec.payload["call_id"] == a.call_id
            assert rec.payload["metadata"]["attempt_id"] == a.attempt_id
    ok = final[jobs[0].id].attempts[0]
    assert ok.success and ok.duration_ms and ok.cost_cents and ok.cost_cents > 0


async def test_success_is_never_dialed_again(db, mongo_uri, tmp_path, sim, sim_clock) -> None:
    people = [Person(["+56911111112", "+56911111113"], {"+56911111112": ["success"]})]
    script(sim, people)
    [job] = await seed_batch("b1", people, SETTINGS, MONDAY_0850)
    await run_campaign(db, make_config(db, mongo_uri, tmp_path), sim_clock, sim)
    # a second run over the same database finds nothing to do for the finished person
    await run_campaign(db, make_config(db, mongo_uri, tmp_path), sim_clock, sim)
    assert len(sim.dials) == 1
    done = await Job.get(job.id)
    assert done.state == JobState.DONE and len(done.attempts) == 1


async def test_no_answer_redialed_only_after_its_delay(db, mongo_uri, tmp_path, sim, sim_clock) -> None:
    people = [Person(["+56966666666"], {"+56966666666": ["no_answer", "no_answer", "success"]})]
    script(sim, people)
    await seed_batch("b1", people, SETTINGS, MONDAY_0850)
    await run_campaign(db, make_config(db, mongo_uri, tmp_path), sim_clock, sim)
    at = [d.at for d in dials_to(sim, "+56966666666")]
    assert len(at) == 3
    for earlier, later in pairwise(at):
        assert later - earlier >= timedelta(minutes=60)


async def test_paused_batch_is_not_dialed(db, mongo_uri, tmp_path, sim, sim_clock) -> None:
    active = [Person(["+56977777777"], {"+56977777777": ["success"]})]
    paused = [Person(["+56988888888"], {"+56988888888": ["success"]})]
    script(sim, active + paused)
    await seed_batch("active", active, SETTINGS, MONDAY_0850)
    [held] = await seed_batch("paused", paused, SETTINGS, MONDAY_0850, status=BatchStatus.PAUSED)
    await run_campaign(db, make_config(db, mongo_uri, tmp_path), sim_clock, sim)
    assert [d.to_number for d in sim.dials] == ["+56977777777"]
    waiting = await Job.get(held.id)
    assert waiting.state == JobState.PENDING
    batch = await Batch.get("paused")
    assert batch.waiting_reason is not None and "paused" in batch.waiting_reason


async def test_nobody_is_dialed_outside_allowed_hours(db, mongo_uri, tmp_path, sim_clock) -> None:
    # Friday 21:30: the next window is Monday 09:00 (weekend not allowed).
    clock = SimClock(datetime(2026, 3, 6, 21, 30, tzinfo=SCL), speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=5) as sim:
        people = [Person([f"+5691234{i:04d}"]) for i in range(12)]  # random outcomes, many retries
        await seed_batch("b1", people, SETTINGS, clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
        assert len(sim.dials) >= 12
        for d in sim.dials:
            assert is_dialable(SETTINGS, d.at), f"dialed at {d.at.astimezone(SCL)}"
        first = min(d.at for d in sim.dials).astimezone(SCL)
        assert first.date() == datetime(2026, 3, 9).date() and first.time() >= time(9)
    assert all(j.state in (JobState.DONE, JobState.FAILED) for j in await Job.find_all().to_list())
