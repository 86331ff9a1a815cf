"""The scale engine through the real scheduler, the embedded server and the simulator over HTTP:
re-adoption order, takeover ahead of new claims, and the due index following changes made by others."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import anyio

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Job, JobState, Lease, Phone, epoch_ms, wall_ms
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
OPEN = CallSettings(max_attempts=1)


def phone(i: int) -> str:
    return f"+5697{i:07d}"


async def _held(batch_id: str, i: int, now: datetime, *, owner: str, until_ms: int, gen: int = 0) -> Job:
    job = Job(account_id="acme", batch_id=batch_id, dedup_key=f"acme:{batch_id}:held{i}", person_key=phone(i),
              phones=[Phone(number=phone(i))], state=JobState.IN_FLIGHT,
              lease=Lease(owner=owner, until_ms=until_ms, gen=gen), next_try_at=now, created_at=now, updated_at=now)
    await job.insert()
    return job


async def test_a_restarted_instance_readopts_its_own_jobs_at_once_and_before_new_claims(db, mongo_uri,
                                                                                        tmp_path) -> None:
    """Its earlier process died holding two jobs whose leases still run for an hour: the same instance
    id takes them back at once (no waiting for expiry) and dials them before any pending job."""
    clock = SimClock(MONDAY_1000, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        pending = [Person([phone(i)], {phone(i): ["success"]}) for i in range(3)]
        script(sim, [*pending, *(Person([phone(i)], {phone(i): ["success"]}) for i in (10, 11))])
        await seed_batch("b1", pending, OPEN, clock.now())
        held = [await _held("b1", i, clock.now(), owner="inst-r", until_ms=wall_ms() + 3_600_000)
                for i in (10, 11)]
        started = anyio.current_time()
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=2, instance_id="inst-r"), clock,
                           sim, timeout=60)
        assert anyio.current_time() - started < 30  # not an hour: no lease was waited out
        order = [d.to_number for d in sim.dials]
    assert sorted(order[:2]) == [phone(10), phone(11)], order
    assert sorted(order[2:]) == [phone(i) for i in range(3)]
    for job in held:
        done = await Job.get(job.id)
        assert done.state == JobState.DONE and done.lease is None


async def test_other_instances_expired_leases_are_taken_over_before_new_claims(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        pending = [Person([phone(i)], {phone(i): ["success"]}) for i in range(3)]
        script(sim, [*pending, *(Person([phone(i)], {phone(i): ["success"]}) for i in (20, 21))])
        await seed_batch("b1", pending, OPEN, clock.now())
        alive = await _held("b1", 22, clock.now(), owner="inst-alive", until_ms=wall_ms() + 3_600_000)
        for i in (20, 21):
            await _held("b1", i, clock.now(), owner="inst-dead", until_ms=0)
        stop = anyio.Event()

        async def stop_when_done() -> None:
            with anyio.fail_after(40):
                while len(sim.dials) < 5:  # noqa: ASYNC110 - the simulator's dial log has no event to wait on
                    await anyio.sleep(0.05)
            stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_done)
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=2, instance_id="inst-new"),
                               clock, sim, stop=stop, timeout=60)
        order = [d.to_number for d in sim.dials]
    assert sorted(order[:2]) == [phone(20), phone(21)], order
    # a live instance's lease is never taken
    still = await Job.get(alive.id)
    assert still.state == JobState.IN_FLIGHT and still.lease.owner == "inst-alive" and phone(22) not in order


async def _write_as_another_instance(job: Job, **changes) -> None:
    """What another instance's or an operator's write looks like: the document changes, sync_ms moves."""
    raw = await Job.get_pymongo_collection().find_one({"_id": job.id})
    raw.update(changes, version=raw["version"] + 1, sync_ms=wall_ms())
    await Job.get_pymongo_collection().replace_one({"_id": job.id}, raw)


async def test_the_due_index_follows_changes_made_elsewhere(db, mongo_uri, tmp_path) -> None:
    """While the instance runs: a job another writer pushes to the future is not dialed before its time;
    one brought forward from next week is dialed now; one finished elsewhere is never dialed; one
    added to a loaded batch is picked up."""
    clock = SimClock(MONDAY_1000, speed=60)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        people = [Person([phone(i)], {phone(i): ["success"]}) for i in range(30, 34)]
        script(sim, [*people, Person([phone(40)], {phone(40): ["success"]})])
        jobs = await seed_batch("b1", people, CallSettings(max_attempts=1, days_of_week=[1, 2, 3, 4, 5, 6, 7]),
                                clock.now())
        later, forward, finished, _busy = jobs
        # the instance starts with "forward" a week out and "blocker" due, so it is busy at once
        next_week = clock.now() + timedelta(days=7)
        await _write_as_another_instance(forward, next_try_at=next_week, next_try_ms=epoch_ms(next_week))
        stop = anyio.Event()
        pushed_to = clock.now() + timedelta(hours=3)

        async def meddle() -> None:
            with anyio.fail_after(40):
                await _write_as_another_instance(later, next_try_at=pushed_to, next_try_ms=epoch_ms(pushed_to))
                await _write_as_another_instance(finished, state=JobState.DONE.value)
                now = clock.now()
                await _write_as_another_instance(forward, next_try_at=now, next_try_ms=epoch_ms(now))
                extra = Job(account_id="acme", batch_id="b1", dedup_key="acme:b1:extra", person_key=phone(40),
                            phones=[Phone(number=phone(40))], next_try_at=now, created_at=now, updated_at=now)
                await extra.insert()
                wanted = {phone(30), phone(31), phone(33), phone(40)}
                while not wanted <= {d.to_number for d in sim.dials}:  # noqa: ASYNC110 - see above
                    await anyio.sleep(0.05)
            stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(meddle)
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=1), clock, sim, stop=stop,
                               timeout=60)
        dialed = {d.to_number: d.at for d in sim.dials}
    assert phone(32) not in dialed  # finished elsewhere
    assert dialed[phone(30)] >= pushed_to  # pushed back: not before its new time
    assert phone(31) in dialed and phone(40) in dialed


async def test_configured_account_limits_are_applied_at_start(db, mongo_uri, tmp_path) -> None:
    from speechai.config import AccountConfig
    from speechai.store.models import Account

    await Account(id="acme", max_concurrent_calls=20, balance_cents=77).insert()
    clock = SimClock(MONDAY_1000, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        config = make_config(db, mongo_uri, tmp_path)
        config.accounts = [AccountConfig(id="acme", max_concurrent_calls=3, daily_call_limit=50),
                           AccountConfig(id="fresh", max_concurrent_calls=7)]
        await run_campaign(db, config, clock, sim, timeout=30)
    acme, fresh = await Account.get("acme"), await Account.get("fresh")
    assert (acme.max_concurrent_calls, acme.daily_call_limit, acme.balance_cents) == (3, 50, 77)
    assert (fresh.max_concurrent_calls, fresh.daily_call_limit, fresh.plan.value) == (7, None, "unlimited")
