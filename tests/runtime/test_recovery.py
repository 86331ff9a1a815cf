"""Recovery of an attempt written before a crash whose create-call outcome is unknown and older than
the idempotency window: the provider's record (list-calls by metadata attempt id) decides."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Attempt, Job, JobState, Lease
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
PHONE = "+56910000009"


async def _orphan(clock: SimClock) -> Job:
    """A job left in flight by a dead instance: attempt written two hours ago, no call id saved."""
    [job] = await seed_batch("b1", [Person([PHONE])], CallSettings(), clock.now())
    job.state = JobState.IN_FLIGHT
    job.lease = Lease(owner="dead-instance", until_ms=0)
    job.attempts = [Attempt(attempt_id="att-old", phone=PHONE, created_at=clock.now() - timedelta(hours=2))]
    await job.save()
    return job


async def test_call_found_by_attempt_id_is_adopted_not_redialed(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, [Person([PHONE], {PHONE: ["success"]})])
        job = await _orphan(clock)
        # the provider did place it before the crash; the runtime never heard the answer
        async with aiohttp.ClientSession() as http, http.post(
                f"{sim.base_url}/v2/create-phone-call", headers={"Authorization": f"Bearer {API_KEY}"},
                json={"from_number": "+56229000000", "to_number": PHONE, "idempotency_key": "att-old",
                      "metadata": {"job_id": str(job.id), "attempt_id": "att-old"}}) as resp:
            assert resp.status == 201
            call_id = (await resp.json())["call_id"]
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
        assert len(sim.dials) == 1
    done = await Job.get(job.id)
    assert done.state == JobState.DONE
    assert [(a.attempt_id, a.call_id, a.placed) for a in done.attempts] == [("att-old", call_id, True)]
    assert done.attempts_counted == 1


async def test_call_not_found_is_not_placed_and_does_not_count(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, [Person([PHONE], {PHONE: ["success"]})])
        job = await _orphan(clock)
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
        # never re-sent with the stale key: the one dial is a new attempt
        assert [d.idempotency_key for d in sim.dials] != ["att-old"] and len(sim.dials) == 1
    done = await Job.get(job.id)
    first, second = done.attempts
    assert first.attempt_id == "att-old" and first.placed is False and not first.counted
    assert second.placed and second.counted and second.call_id == sim.dials[0].call_id
    assert done.state == JobState.DONE and done.attempts_counted == 1
