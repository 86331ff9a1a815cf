"""Bulk "these people paid": waiting jobs stop at once (excluded, reason ``paid``); a job in flight finishes
its call through the real scheduler and the simulator over HTTP and is never dialed again; the route
(JSON and CSV) and ``speechai paid`` (a subprocess) say how many stopped and which keys matched nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import anyio

from actors.clock import SimClock
from speechai.dialing import paid
from speechai.domain.settings import CallSettings
from speechai.loader.normalize import parse_rut
from speechai.loader.synthetic import valid_rut
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import DoNotCall, Job, JobState, Phone, dnc_id, epoch_ms
from tests.dialing.conftest import MONDAY_0900, SCL
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch
from tests.test_query_plans import INDEXED

MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
P1, P2, P3, P4 = "+56971000001", "+56971000002", "+56971000003", "+56971000004"
NOBODY = parse_rut(valid_rut(12345670))  # "12345670-K": a RUT as jobs carry it


async def _later(phone: str, state: JobState, at: datetime) -> None:
    job = await Job.find_one({"person_key": phone})
    job.state, job.next_try_at = state, at
    job.next_try_ms = epoch_ms(at)  # what the due index reads, as every checkpoint writes it
    await job.replace()


async def _job(phone: str) -> Job:
    return await Job.find_one({"person_key": phone})


async def test_paid_stops_waiting_jobs_and_the_live_call_finishes_and_is_never_retried(db, mongo_uri,
                                                                                        tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=60)
    people = [Person([P1], {P1: ["answered"]}), Person([P2], {P2: ["success"]}), Person([P3], {P3: ["success"]}),
              Person([P4], {P4: ["success"]})]
    async with RetellSimulator(api_key=API_KEY, clock=clock, talk_s={"answered": 300}) as sim:
        script(sim, people)
        await seed_batch("b1", people, CallSettings(), clock.now())
        later = clock.now() + timedelta(hours=2)
        await _later(P2, JobState.PENDING, later)
        await _later(P3, JobState.RETRY, later)
        await _later(P4, JobState.PENDING, later)  # not on the list: dialed in its time
        result: paid.PaidResult | None = None

        async def pay_during_the_call() -> None:
            nonlocal result
            with anyio.fail_after(30):
                while sim.live_calls() < 1:  # noqa: ASYNC110 - the simulator offers no event to wait on
                    await anyio.sleep(0.02)
            result = await paid.mark_paid("acme", [P1, P2, P3, NOBODY], clock.now())

        async with anyio.create_task_group() as tg:
            tg.start_soon(pay_during_the_call)
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=1), clock, sim, timeout=90)
        dials = [d.to_number for d in sim.dials]
    assert result is not None and (result.stopped, result.live, result.unmatched) == (2, 1, [NOBODY])
    assert dials.count(P1) == 1 and P2 not in dials and P3 not in dials and dials.count(P4) == 1
    p1 = await _job(P1)
    [attempt] = p1.attempts
    assert attempt.placed and attempt.disconnection_reason == "user_hangup"  # the call ran to its end
    assert p1.state == JobState.EXCLUDED and "do-not-call" in p1.last_reason
    for phone, was in ((P2, JobState.PENDING), (P3, JobState.RETRY)):
        job = await _job(phone)
        assert job.state == JobState.EXCLUDED and job.last_reason == "paid" and job.attempts == []
        assert (job.history[-1].from_state, job.history[-1].to_state) == (was, JobState.EXCLUDED)
    assert (await _job(P4)).state == JobState.DONE
    for phone in (P1, P2, P3):
        entry = await DoNotCall.get(dnc_id("acme", phone))
        assert entry is not None and entry.reason == "paid"
    assert await DoNotCall.get(dnc_id("acme", P4)) is None


async def _seed_waiting(account: str, keys: list[str], state: JobState = JobState.PENDING) -> None:
    for i, key in enumerate(keys):
        phone = f"+5698800000{i}"
        await Job(account_id=account, batch_id=f"{account}-b", dedup_key=f"{account}:b:{i}", person_key=key,
                  national_id=key if "-" in key else None, phones=[Phone(number=phone)], state=state,
                  next_try_at=MONDAY_0900, created_at=MONDAY_0900, updated_at=MONDAY_0900).insert()


async def test_the_route_takes_json_and_csv_and_names_what_matched_nothing(dialing_api) -> None:
    api = dialing_api
    ruts = [parse_rut(valid_rut(n)) for n in (21373101, 11111111, 13131313)]
    await _seed_waiting("acme", ruts)
    await _seed_waiting("beta", [ruts[0]])  # another account's person of the same RUT is not touched
    dotted = "21.373.101-7"  # written another way: read as the same RUT
    status, body = await api.call("acme:operator", "POST", "/accounts/acme/paid", json=[dotted, "+56911112222"])
    assert status == 200, body
    assert (body["stopped"], body["live"], body["unmatched"]) == (1, 0, ["+56911112222"])
    assert (await Job.find_one({"account_id": "beta"})).state == JobState.PENDING

    csv_body = f"rut,nombre\n{ruts[1]},Ana\n{ruts[2]},Luis\n{ruts[0]},Eva\n".encode()  # first column
    status, body = await api.call("acme:operator", "POST", "/accounts/acme/paid", data=csv_body,
                                  headers={"Content-Type": "text/csv"})
    assert status == 200 and body["stopped"] == 2 and body["already_final"] == 1 and body["unmatched"] == []
    jobs = await Job.find({"account_id": "acme"}).to_list()
    assert {j.state for j in jobs} == {JobState.EXCLUDED} and {j.last_reason for j in jobs} == {"paid"}
    assert (await DoNotCall.get(dnc_id("acme", ruts[0]))).reason == "paid"

    status, body = await api.call("acme:operator", "POST", "/accounts/acme/paid", json={"keys": ["hello", ruts[1]]})
    assert status == 422 and "'hello'" in body["detail"] and "nothing was changed" in body["detail"]
    status, body = await api.call("acme:operator", "POST", "/accounts/acme/paid", json={"rut": ruts[1]})
    assert status == 422 and body["problems"][0]["field"] == "keys"
    status, _ = await api.call("acme:viewer", "POST", "/accounts/acme/paid", json=[ruts[1]])
    assert status == 403
    status, _ = await api.call("beta:operator", "POST", "/accounts/acme/paid", json=[ruts[1]])
    assert status == 404


async def test_a_list_of_the_documented_size_is_accepted_and_a_longer_one_named(dialing_api) -> None:
    keys = [f"+5699{i:07d}" for i in range(paid.MAX_KEYS)]  # docs/dialing.md: at most 10,000 per list
    status, body = await dialing_api.call("acme:operator", "POST", "/accounts/acme/paid", json=keys)
    assert status == 200, body
    assert body["stopped"] == 0 and len(body["unmatched"]) == paid.MAX_KEYS
    status, body = await dialing_api.call("acme:operator", "POST", "/accounts/acme/paid",
                                          json=[*keys, "+56988888888"])
    assert status == 422 and "at most 10000" in body["detail"]


async def test_the_cli_command_stops_the_jobs_of_a_file(db, mongo_uri, tmp_path: Path) -> None:
    from speechai.store.models import Account

    await Account(id="acme").insert()
    ruts = [parse_rut(valid_rut(n)) for n in (21373101, 11111111)]
    await _seed_waiting("acme", ruts, JobState.RETRY)
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[mongo]\nuri = "{mongo_uri}"\ndatabase = "{db.name}"\n')
    listing = tmp_path / "pagados.csv"
    listing.write_text(f"RUT\n{ruts[0]}\n{NOBODY.replace('-', '')}\n")
    done = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "speechai.cli", "paid", "--config", str(config), "--account", "acme", str(listing)],
        capture_output=True, text=True, timeout=120))
    assert done.returncode == 0, done.stderr
    assert "1 waiting jobs stopped" in done.stdout and f"matched no job: {NOBODY}" in done.stdout
    states = {j.person_key: j.state for j in await Job.find({"account_id": "acme"}).to_list()}
    assert states == {ruts[0]: JobState.EXCLUDED, ruts[1]: JobState.RETRY}

    bad = tmp_path / "bad.json"
    bad.write_text('["12.345.678-5", "no es un rut"]')
    done = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "speechai.cli", "paid", "--config", str(config), "--account", "acme", str(bad)],
        capture_output=True, text=True, timeout=120))
    assert done.returncode == 2 and "'no es un rut'" in done.stderr and "nothing was changed" in done.stderr


async def test_the_person_read_is_answered_from_an_index(db) -> None:
    coll = Job.get_pymongo_collection()
    await coll.insert_many([{"person_key": f"p{i}", "account_id": "acme", "state": "done"} for i in range(50)])
    plan = json.dumps((await coll.find(paid.person_query("acme", "12345678-5")).explain()).get("queryPlanner", {}),
                      default=str)
    assert any(mark in plan for mark in INDEXED), plan[:400]
    assert "SCAN jobs" not in plan.replace("SCAN json_each", ""), plan[:400]
