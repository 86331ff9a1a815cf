"""Pre-dial eligibility: a real aiohttp receiver verifies the Standard Webhooks signature and answers
call, skip or exclude per phone, one slowly and one with an error, while the real scheduler dials
through the simulator over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import anyio
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from actors.clock import SimClock
from speechai.dialing.predial import PredialError, apply_policy, parse_answer
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, Job, JobState
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
SECRET = "whsec_" + base64.b64encode(b"predial-test-secret-0123456789ab").decode()
CALL, SKIP, EXCLUDE, SLOW, FAIL, BETA = (f"+5697400000{i}" for i in range(6))


def test_answers_are_parsed_strictly() -> None:
    assert parse_answer(200, b'{"action": "exclude", "reason": "paid"}').action == "exclude"
    for status, body in ((500, b'{"action": "call"}'), (200, b"<html>"), (200, b'{"action": "maybe"}')):
        with pytest.raises(PredialError):
            parse_answer(status, body)
    assert apply_policy("skip", "timeout").action == "skip"
    with pytest.raises(ValueError, match="predial_on_error 'retry'"):
        apply_policy("retry", "timeout")


class Receiver:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        try:
            Webhook(SECRET).verify(body, dict(request.headers))
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=401)
        data = json.loads(body)["data"]
        phone = data["phone"]
        self.seen.append(phone)
        assert data["job_id"] and data["batch_id"] and data["person_key"]
        if phone == SLOW:
            await asyncio.sleep(3)
        if phone in (FAIL, BETA):
            return web.Response(status=500, text="oops")
        action = {CALL: "call", SKIP: "skip", EXCLUDE: "exclude", SLOW: "call"}[phone]
        return web.json_response({"action": action, "reason": "paid" if action == "exclude" else "not today"})


async def test_each_answer_and_the_error_policies(db, mongo_uri, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPEECHAI_PREDIAL_SECRET", SECRET)
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/eligible", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/eligible"
    clock = SimClock(MONDAY_1000, speed=60)
    people = [Person([p], {p: ["success"]}) for p in (CALL, SKIP, EXCLUDE, SLOW, FAIL)]
    try:
        async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
            script(sim, [*people, Person([BETA], {BETA: ["success"]})])
            await Account(id="acme", predial_url=url, predial_timeout_s=0.5).insert()
            await Account(id="beta", predial_url=url, predial_on_error="call").insert()  # fails open
            await seed_batch("b1", people, CallSettings(), clock.now())
            await seed_batch("b2", [Person([BETA])], CallSettings(), clock.now(), account="beta")
            stop = anyio.Event()

            async def decided() -> bool:
                asked = {CALL, SKIP, EXCLUDE, SLOW, FAIL, BETA} <= set(receiver.seen)
                return asked and len(await Job.find({"state": JobState.DONE.value}).to_list()) == 2

            async def until_decided() -> None:
                with anyio.fail_after(30):
                    while not await decided():  # noqa: ASYNC110 - receiver and database have no event
                        await anyio.sleep(0.05)
                stop.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(until_decided)
                # no skipping ahead: the skipped jobs' next try (an hour away) stays out of this run
                config = make_config(db, mongo_uri, tmp_path, skip_idle=False)
                await run_campaign(db, config, clock, sim, stop=stop, timeout=40)
            dialed = {d.to_number for d in sim.dials}
    finally:
        await runner.cleanup()
    assert receiver.bad_signatures == 0
    assert dialed == {CALL, BETA}  # skip, exclude, the slow and the failing one (fail closed) never dialed
    jobs = {j.phones[0].number: j for j in await Job.find_all().to_list()}
    assert jobs[CALL].state == JobState.DONE and jobs[CALL].predial_action == "call"
    assert jobs[EXCLUDE].state == JobState.EXCLUDED and "paid" in jobs[EXCLUDE].last_reason
    assert (jobs[EXCLUDE].predial_action, jobs[EXCLUDE].predial_reason) == ("exclude", "paid")
    assert jobs[SKIP].state == JobState.RETRY and "creditor said skip" in jobs[SKIP].last_reason
    assert jobs[SLOW].state == JobState.RETRY
    assert "pre-dial hook failed (no answer within 0.5 s); policy skip" in jobs[SLOW].last_reason
    assert jobs[FAIL].state == JobState.RETRY and "(hook answered HTTP 500); policy skip" in jobs[FAIL].last_reason
    assert jobs[BETA].state == JobState.DONE and jobs[BETA].predial_action == "call"  # error policy "call"
    assert "HTTP 500" in jobs[BETA].predial_reason
    for p in (CALL, EXCLUDE, SKIP, SLOW, FAIL):
        assert not jobs[p].attempts or p == CALL  # no attempt is written for a dial the hook stopped
