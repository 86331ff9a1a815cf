"""Regression tests for runtime defects: each drives the real runtime, the embedded MongoDB server and
the Retell simulator over HTTP through the path that went wrong."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.domain.windows import is_dialable
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, Attempt, Job, JobState, Lease
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
PHONE = "+56910000021"


@pytest.mark.parametrize("refusal", [429, 402])
async def test_refused_resend_after_a_lost_reply_adopts_the_call_not_redials(db, mongo_uri, tmp_path,
                                                                             refusal: int) -> None:
    """create-call went through but its reply was lost (5xx); the re-send with the same key is refused
    before the provider looks the key up. The refusal proves nothing about the first send: the call
    exists and must be tracked, not replaced by a second dial to the same person."""
    clock = SimClock(MONDAY_1000, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        people = [Person([PHONE], {PHONE: ["success"]})]
        script(sim, people)
        [job] = await seed_batch("b1", people, CallSettings(), clock.now())
        sim.fail_next("create-phone-call", 500, after_create=True)  # placed; the caller never hears of it
        sim.fail_next("create-phone-call", refusal)  # the re-send is turned away at the door
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
        assert len(sim.dials) == 1, [d.idempotency_key for d in sim.dials]
        call_id = sim.dials[0].call_id
    done = await Job.get(job.id)
    assert done.state == JobState.DONE
    assert [(a.call_id, a.placed, a.success) for a in done.attempts] == [(call_id, True, True)]


async def test_unsent_attempt_resumed_after_hours_is_not_dialed_after_hours(db, mongo_uri, tmp_path) -> None:
    """An instance died between writing an attempt (19:58) and create-call; it restarts at 20:05, after
    the window closed. Re-sending the key would be a first dial outside the allowed hours: the provider
    must be asked instead, and the person dialed in the next window."""
    settings = CallSettings()  # 09:00-20:00 Monday-Saturday, Santiago
    clock = SimClock(datetime(2026, 3, 2, 20, 5, tzinfo=SCL), speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, [Person([PHONE], {PHONE: ["success"]})])
        [job] = await seed_batch("b1", [Person([PHONE])], settings, clock.now())
        job.state = JobState.IN_FLIGHT
        job.lease = Lease(owner="dead-instance", until_ms=0)
        job.attempts = [Attempt(attempt_id="att-unsent", phone=PHONE, created_at=clock.now() - timedelta(minutes=7))]
        await job.save()
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
        assert sim.dials, "the person is still dialed, in the next window"
        for d in sim.dials:
            assert is_dialable(settings, d.at), f"dialed at {d.at.astimezone(SCL)}"
    done = await Job.get(job.id)
    assert done.state == JobState.DONE
    assert done.attempts[0].placed is False and not done.attempts[0].counted
    assert done.attempts_counted == 1


async def test_taken_over_jobs_respect_the_accounts_concurrent_call_limit(db, mongo_uri, tmp_path) -> None:
    """Two jobs claimed by an instance that died before writing any attempt: the takeover must not dial
    both at once when the account allows one concurrent call."""
    clock = SimClock(MONDAY_1000, speed=600)
    phones = ["+56910000031", "+56910000032"]
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        people = [Person([p], {p: ["success"]}) for p in phones]
        script(sim, people)
        await Account(id="acme", max_concurrent_calls=1).insert()
        jobs = await seed_batch("b1", people, CallSettings(), clock.now())
        for job in jobs:
            job.state = JobState.IN_FLIGHT
            job.lease = Lease(owner="dead-instance", until_ms=0)
            await job.save()
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
        assert sorted(d.to_number for d in sim.dials) == phones
        calls = sim.calls
        spans = sorted((d.at, datetime.fromtimestamp(calls[d.call_id]["end_timestamp"] / 1000, d.at.tzinfo))
                       for d in sim.dials)
    (_, first_end), (second_start, _) = spans
    assert second_start >= first_end, "two calls of a one-call account were live at once"
    assert all(j.state == JobState.DONE for j in await Job.find_all().to_list())


async def test_call_id_unknown_to_the_provider_ends_the_attempt_instead_of_crashing(
        db, mongo_uri, tmp_path) -> None:
    clock = SimClock(datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/Santiago")), speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        people = [Person(["+56910000077"], {"+56910000077": ["long_call"]})]
        script(sim, people)
        sim.fail_next("get-call", 404, times=1000)
        [job] = await seed_batch("nf", people, CallSettings(max_attempts=2), clock.now())

        def polling_only(instance) -> None:
            # With webhooks arriving the call would be followed by them and never polled: this is about
            # what a poll's 404 does, so the provider sends none.
            instance.simulator.webhook_url = None

        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim, timeout=60, on_ready=polling_only)
    done = await Job.get(job.id)
    assert done.state == JobState.FAILED
    assert [a.outcome for a in done.attempts] == ["provider_error", "provider_error"]
    assert all(a.call_id for a in done.attempts) and len(sim.dials) == 2
