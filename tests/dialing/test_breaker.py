"""The failure circuit breaker through the real scheduler and the simulator over HTTP: a storm of
``dial_failed`` or of create-call 400s pauses the batch and restores the phones it marked bad; a
no-answer storm never trips it. The rules themselves, pure."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from structlog.testing import capture_logs

from actors.clock import SimClock
from speechai.dialing.breaker import BatchBreaker, BreakerRules
from speechai.domain.settings import CallSettings
from speechai.retell.sim_outcomes import OutcomeRates
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Batch, BatchStatus, Job, JobState
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)


def phone(i: int) -> str:
    return f"+5698{i:07d}"


def test_the_ratio_rule_needs_enough_attempts_inside_the_window() -> None:
    b = BatchBreaker(BreakerRules(min_attempts=20, ratio=0.5, window_s=300))
    t = MONDAY_1000
    for i in range(19):  # 19 failures: not enough attempts yet
        assert b.record(t + timedelta(seconds=i), "dial_failed", f"j{i}", phone(i)) is None
    trip = b.record(t + timedelta(seconds=19), "dial_failed", "j19", phone(19))
    assert trip is not None and (trip.attempts, trip.failures) == (20, 20) and len(trip.marked_bad) == 20
    assert b.record(t + timedelta(seconds=20), "dial_failed", "j20", None) is None  # trips once


def test_normal_attempts_dilute_and_old_ones_leave_the_window() -> None:
    b = BatchBreaker(BreakerRules(min_attempts=20, ratio=0.5, window_s=300))
    t = MONDAY_1000
    for i in range(30):  # 9 failures in 30: below half
        assert b.record(t + timedelta(seconds=i), "dial_failed" if i % 3 == 0 and i < 27 else None, "j", None) is None
    b2 = BatchBreaker(BreakerRules(min_attempts=20, ratio=0.5, window_s=300))
    for i in range(15):  # 15 failures, then 10 minutes later 10 more: never 20 attempts in one window
        assert b2.record(t + timedelta(seconds=i), "provider_error", "j", None) is None
    for i in range(10):
        assert b2.record(t + timedelta(minutes=10, seconds=i), "provider_error", "j", None) is None


def test_consecutive_4xx_trips_and_any_other_attempt_resets_the_run() -> None:
    b = BatchBreaker(BreakerRules(consecutive_4xx=10))
    t = MONDAY_1000
    for _ in range(9):
        assert b.record(t, "create_4xx", "j", None) is None
    assert b.record(t, None, "j", None) is None  # a normal attempt breaks the run
    for i in range(9):  # an hour apart: the run counts, however long it took
        assert b.record(t + timedelta(hours=i), "create_4xx", f"j{i}", phone(i)) is None
    trip = b.record(t + timedelta(hours=9), "create_4xx", "j9", phone(9))
    assert trip is not None and trip.consecutive_4xx == 10
    assert sorted(trip.marked_bad) == [(f"j{i}", phone(i)) for i in range(10)]  # the whole run is restored
    b.reset()
    assert not b.tripped and not b.events


async def test_a_dial_failed_storm_pauses_the_batch_and_restores_the_phones(db, mongo_uri, tmp_path) -> None:
    # 5 business minutes are 5 real seconds here: the storm's attempts fall inside one window
    clock = SimClock(MONDAY_1000, speed=60)
    people = [Person([phone(2 * i), phone(2 * i + 1)]) for i in range(30)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, rates=OutcomeRates({"dial_failed": 1.0})) as sim:
        await seed_batch("b1", people, CallSettings(), clock.now())
        with capture_logs() as logs:
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=20), clock, sim, timeout=60)
        dials = len(sim.dials)
    batch = await Batch.get("b1")
    assert batch.status == BatchStatus.PAUSED and batch.status_reason.startswith("circuit breaker"), batch
    assert "of 20 attempts" in batch.status_reason or "attempts in 5 min failed" in batch.status_reason
    paused = [e for e in logs if e["event"] == "batch_paused"]
    assert len(paused) == 1 and paused[0]["failures"] >= 10 and paused[0]["attempts"] >= 20
    # the pause is an outbox event, written with the pause itself (docs/integrations.md)
    [event] = batch.outbox
    assert event.type == "batch.paused"
    assert event.data == {"batch_id": "b1", "account_id": "acme", "reason": batch.status_reason}
    jobs = await Job.find({"batch_id": "b1"}).to_list()
    assert not [j for j in jobs if j.state == JobState.FAILED]
    assert not [(j.id, p.number) for j in jobs for p in j.phones if p.bad]  # the storm's marks are undone
    assert dials < 60  # stopped well before every phone of every person was tried


async def test_a_create_call_400_storm_pauses_after_ten_in_a_row(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    people = [Person([phone(i)]) for i in range(15)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, rates=OutcomeRates({"success": 1.0})) as sim:
        sim.fail_next("create-phone-call", 400, times=15)
        await seed_batch("b1", people, CallSettings(), clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=1), clock, sim, timeout=60)
        refused = sim.responses[("create-phone-call", 400)]
    batch = await Batch.get("b1")
    assert batch.status == BatchStatus.PAUSED and "10 create-calls in a row refused with 4xx" in batch.status_reason
    assert refused == 10
    jobs = await Job.find({"batch_id": "b1"}).to_list()
    # single-phone people whose only phone the storm marked bad are waiting again, the phone restored
    assert not [j for j in jobs if j.state == JobState.FAILED or j.phones[0].bad]


async def test_a_no_answer_storm_never_trips_it(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    people = [Person([phone(i)]) for i in range(25)]
    async with RetellSimulator(api_key=API_KEY, clock=clock,
                               rates=OutcomeRates({"no_answer": 1.0, "busy": 1.0})) as sim:
        await seed_batch("b1", people, CallSettings(max_attempts=1), clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=20), clock, sim, timeout=60)
        assert len(sim.dials) == 25
    batch = await Batch.get("b1")
    assert batch.status == BatchStatus.ACTIVE
    jobs = await Job.find({"batch_id": "b1"}).to_list()
    assert {j.state for j in jobs} == {JobState.FAILED}  # attempts used up, as normal


async def test_create_call_server_errors_trip_it_without_touching_phones(db, mongo_uri, tmp_path) -> None:
    """Every create-call answers 500 (each retried, then found unplaced): provider errors, paused."""
    clock = SimClock(MONDAY_1000, speed=60)
    people = [Person([phone(i)]) for i in range(20)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, rates=OutcomeRates({"success": 1.0})) as sim:
        sim.fail_next("create-phone-call", 500, times=1000)
        await seed_batch("b1", people, CallSettings(), clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=20), clock, sim, timeout=60)
        assert sim.dials == []
    batch = await Batch.get("b1")
    assert batch.status == BatchStatus.PAUSED and "provider_error" in batch.status_reason, batch.status_reason
    jobs = await Job.find({"batch_id": "b1"}).to_list()
    assert {j.state for j in jobs} <= {JobState.RETRY, JobState.PENDING} and not [j for j in jobs if j.phones[0].bad]


async def test_a_copy_of_the_batch_from_before_the_pause_does_not_reset_a_tripped_breaker(db) -> None:
    """Calls that end while the storm's pause is being written may read the batch still active (a copy
    cached a moment before): that is no operator's resume, so their failures keep the phone."""
    from speechai.dialing.hooks import after_attempt
    from speechai.domain.decision import NextStep
    from speechai.runtime.context import Runtime
    from speechai.store.models import Attempt

    clock = SimClock(MONDAY_1000, speed=1)
    rt = Runtime(clock=clock, retell=None, instance_id="i1", agent_id=None, from_number="+56229999999")  # type: ignore[arg-type]
    people = [Person([phone(2 * i), phone(2 * i + 1)]) for i in range(25)]
    jobs = await seed_batch("b1", people, CallSettings(), clock.now())
    active = await Batch.get("b1")

    def failed(job: Job) -> Attempt:
        return Attempt(attempt_id=f"a-{job.id}", phone=job.phones[0].number, created_at=clock.now(),
                       call_id=f"call-{job.id}", outcome="dial_failed", disconnection_reason="dial_failed")

    mark = NextStep("next_phone", clock.now(), True, "dial failed")
    steps = [await after_attempt(rt, job, failed(job), mark) for job in jobs[:20]]
    assert steps[-1].action == "retry" and not steps[-1].mark_phone_bad  # the 20th tripped it
    assert (await Batch.get("b1")).status == BatchStatus.PAUSED
    rt.batches.put("b1", active)  # what a read begun before the pause's write brought back
    late = await after_attempt(rt, jobs[20], failed(jobs[20]), mark)
    assert late.action == "retry" and not late.mark_phone_bad and "failure storm" in late.reason
