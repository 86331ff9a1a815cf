"""Jobs claimed ahead of a free line: while every line is busy a few more are claimed and checked, a line
freed by a call that ends goes to one of them, the provider never sees more calls than the limit, and
an operator's pause sends the waiting ones back without a dial. Real scheduler, embedded server,
simulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import anyio
import pytest

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Job, JobState
from tests.runtime.harness import API_KEY, Instance, Person, make_config, run_campaign, script, seed_batch
from tests.runtime.test_policy_e2e import TOKEN, drive

MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/Santiago"))
OPEN = CallSettings(max_attempts=1)


def phone(i: int) -> str:
    return f"+5698{i:07d}"


async def _sampled(db, mongo_uri, tmp_path, people: list[Person], **runtime: int) -> tuple[list[dict], list[str], int]:
    """Run a campaign to its end, sampling the scheduler and the simulator every 2 ms: each sample's
    jobs claimed ahead of a line, jobs held and live calls; then the dials and the simulator's peak."""
    clock = SimClock(MONDAY_1000, speed=300)
    samples: list[dict] = []
    box: list[Instance] = []

    async def watch() -> None:
        while not box:  # noqa: ASYNC110 - sampling a running instance: nothing to wait on
            await anyio.sleep(0.001)
        inst = box[0]
        while True:
            samples.append({"ahead": len(inst.scheduler._tickets), "held": len(inst.scheduler.in_flight),
                            "live": inst.simulator.live_calls()})
            await anyio.sleep(0.002)

    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, people)
        await seed_batch("b1", people, OPEN, clock.now())
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, **runtime), clock, sim, timeout=60,
                               on_ready=box.append)
            tg.cancel_scope.cancel()
        return samples, [d.to_number for d in sim.dials], sim.peak_live_calls


async def test_lines_busy_more_jobs_are_claimed_ahead_and_the_limit_holds(db, mongo_uri, tmp_path) -> None:
    people = [Person([phone(i)], {phone(i): ["success"]}) for i in range(8)]
    samples, dials, peak = await _sampled(db, mongo_uri, tmp_path, people, concurrency=2, ready_ahead=2)
    assert sorted(dials) == [phone(i) for i in range(8)]  # each person once
    assert peak <= 2 and max(s["live"] for s in samples) <= 2  # the provider never had more than the limit
    # claimed beyond the busy lines, never more than ready_ahead of them (the others held are live
    # calls and actors writing the result of a call that ended)
    assert 1 <= max(s["ahead"] for s in samples) <= 2 and max(s["held"] for s in samples) > 2
    assert all(j.state == JobState.DONE and j.lease is None for j in await Job.find_all().to_list())


async def test_ready_ahead_zero_claims_only_for_free_lines(db, mongo_uri, tmp_path) -> None:
    people = [Person([phone(i)], {phone(i): ["success"]}) for i in range(4)]
    samples, dials, _ = await _sampled(db, mongo_uri, tmp_path, people, concurrency=1, ready_ahead=0)
    assert len(dials) == 4
    assert samples and max(s["ahead"] for s in samples) == 0  # no job was ever claimed ahead of a line


# One line, held by a call that talks until its maximum; the next job is claimed ahead and waits.
ONE_LINE_PEOPLE = [Person([phone(0)], {phone(0): ["long_call"]}),
                   *(Person([phone(i)], {phone(i): ["success"]}) for i in (1, 2))]
ONE_LINE_SETTINGS = CallSettings(max_attempts=1, max_call_duration_s=120)


@asynccontextmanager
async def _one_line_campaign() -> AsyncIterator[tuple[SimClock, RetellSimulator, list[Job]]]:
    """The simulator and batch ``b1`` of ``ONE_LINE_PEOPLE``: one long call, two jobs to follow it."""
    clock = SimClock(MONDAY_1000, speed=20)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, ONE_LINE_PEOPLE)
        yield clock, sim, await seed_batch("b1", ONE_LINE_PEOPLE, ONE_LINE_SETTINGS, clock.now())


async def _one_dialed_one_waiting(inst: Instance, sim: RetellSimulator) -> None:
    with anyio.fail_after(20):
        while not sim.dials or not any(t.waiting for t, _ in inst.scheduler._tickets.values()):  # noqa: ASYNC110
            await anyio.sleep(0.005)


async def _none_waiting(inst: Instance) -> None:
    with anyio.fail_after(20):
        while inst.scheduler._tickets:  # noqa: ASYNC110 - the scheduler's state has no event
            await anyio.sleep(0.005)


@pytest.fixture
def control_token(monkeypatch) -> str:
    monkeypatch.setenv("SPEECHAI_CONTROL_TOKEN", TOKEN)
    return TOKEN


async def test_a_pause_sends_the_jobs_waiting_for_a_line_back_undialed(db, mongo_uri, tmp_path,
                                                                       control_token) -> None:
    async with _one_line_campaign() as (clock, sim, jobs):

        async def body(inst: Instance, http: aiohttp.ClientSession, base: str) -> None:
            await _one_dialed_one_waiting(inst, sim)
            assert len(sim.dials) == 1 and sim.live_calls() == 1
            async with http.post(f"{base}/batches/b1/pause") as r:
                assert r.status == 200
            await _none_waiting(inst)

        await drive(db, make_config(db, mongo_uri, tmp_path, concurrency=1, ready_ahead=1), clock, sim, body,
                    within=40)
        assert [d.to_number for d in sim.dials] == [phone(0)]  # the one waiting was never dialed
    for job in jobs[1:]:
        back = await Job.get(job.id)
        assert back.state == JobState.PENDING and back.attempts == [] and back.lease is None


async def test_a_do_not_call_entry_reaches_a_job_waiting_for_a_line(db, mongo_uri, tmp_path, control_token) -> None:
    async with _one_line_campaign() as (clock, sim, jobs):
        waiting: list[str] = []

        async def body(inst: Instance, http: aiohttp.ClientSession, base: str) -> None:
            await _one_dialed_one_waiting(inst, sim)
            waiting.extend(inst.scheduler.in_flight)
            for i in (1, 2):
                async with http.post(f"{base}/accounts/acme/do-not-call", json={"key": phone(i)}) as r:
                    assert r.status == 201
            await _none_waiting(inst)

        await drive(db, make_config(db, mongo_uri, tmp_path, concurrency=1, ready_ahead=1), clock, sim, body,
                    within=40)
        assert [d.to_number for d in sim.dials] == [phone(0)]
    ahead = [j for j in jobs[1:] if str(j.id) in waiting]
    assert len(ahead) == 1  # one of them was waiting for the line when it was listed
    back = await Job.get(ahead[0].id)
    assert back.state == JobState.EXCLUDED and back.attempts == [] and "do-not-call" in back.last_reason


async def test_a_line_freed_while_the_scheduler_is_busy_goes_to_the_waiting_job_at_once(
        db, mongo_uri, tmp_path, control_token) -> None:
    """The ending call hands its line on in its own task: the next dial needs no scheduler pass (here
    every pass after the first dial is held back until the second dial has gone out)."""
    async with _one_line_campaign() as (clock, sim, _):
        passes_while_held: list[int] = []

        async def body(inst: Instance, http: aiohttp.ClientSession, base: str) -> None:
            await _one_dialed_one_waiting(inst, sim)
            assert len(sim.dials) == 1
            scheduler, fill, go_on = inst.scheduler, inst.scheduler.fill, anyio.Event()

            async def held_fill():
                passes_while_held.append(1)
                await go_on.wait()
                return await fill()

            scheduler.fill = held_fill
            with anyio.fail_after(30):
                while len(sim.dials) < 2:  # noqa: ASYNC110 - the simulator's record has no event
                    await anyio.sleep(0.01)
            assert sim.live_calls() == 1  # the first call is over: one line, never two calls
            scheduler.fill = fill
            go_on.set()

        await drive(db, make_config(db, mongo_uri, tmp_path, concurrency=1, ready_ahead=1), clock, sim, body,
                    within=60)
        dialed = [d.to_number for d in sim.dials]
        assert dialed[0] == phone(0) and dialed[1] in (phone(1), phone(2)) and len(set(dialed)) == len(dialed)
        assert len(passes_while_held) <= 1  # at most the one pass that was held back


async def test_while_a_job_waits_for_a_line_its_batch_and_account_stay_cached(
        db, mongo_uri, tmp_path, control_token) -> None:
    """The scheduler renews its view before the cached copies expire while a job claimed ahead waits,
    so the reads a freed line's dial makes (batch, account) never go to the database."""
    async with _one_line_campaign() as (clock, sim, _):
        reads: list[int] = []

        async def body(inst: Instance, http: aiohttp.ClientSession, base: str) -> None:
            rt = inst.rt
            rt.limits.cache_ttl_s = rt.batches.ttl_s = rt.accounts.ttl_s = 1.0  # resyncs stay 2 s apart
            await _one_dialed_one_waiting(inst, sim)
            before = rt.batches.reads + rt.accounts.reads
            for _ in range(60):  # 3 s: three lifetimes of a cached copy, one and a half resyncs
                assert await rt.batches.get("b1") is not None and await rt.accounts.get("acme") is not None
                await anyio.sleep(0.05)
            assert any(t.waiting for t, _ in inst.scheduler._tickets.values())  # still waiting throughout
            reads.append(rt.batches.reads + rt.accounts.reads - before)

        await drive(db, make_config(db, mongo_uri, tmp_path, concurrency=1, ready_ahead=1), clock, sim, body,
                    within=60)
        assert reads == [0]
