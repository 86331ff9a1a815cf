"""Retell webhooks through the real control endpoint over HTTP: signatures made by the official SDK,
rejection of bad/stale ones, deduplication, and routing to the call actor that holds the job."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import anyio
from retell.lib import webhook_auth

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import BatchStatus, CallRecord, Job, JobState, WebhookEvent
from tests.runtime.harness import API_KEY, Instance, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)


def _body(event: str, call_id: str, **metadata: str) -> bytes:
    return json.dumps({"event": event, "call": {"call_id": call_id, "call_status": "ended",
                                                "metadata": metadata}}).encode()


def _sdk_sign(body: bytes, key: str = API_KEY, age_ms: int = 0) -> str:
    return webhook_auth.symmetric["sign"](body.decode(), key, int(time.time() * 1000) - age_ms)


Body = Callable[[Instance, aiohttp.ClientSession, str], Awaitable[None]]


async def with_runtime(db, mongo_uri, tmp_path, body: Body) -> None:
    """Run ``body`` against a live runtime instance (no batches), then stop it."""
    clock = SimClock(MONDAY_1000, speed=600)
    ready: list[Instance] = []
    is_ready, stop = anyio.Event(), anyio.Event()

    def on_ready(instance: Instance) -> None:
        ready.append(instance)
        is_ready.set()

    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim, anyio.create_task_group() as tg:
        tg.start_soon(lambda: run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim, stop=stop,
                                           on_ready=on_ready))
        try:
            with anyio.fail_after(20):
                await is_ready.wait()
            async with aiohttp.ClientSession() as http:
                await body(ready[0], http, f"http://127.0.0.1:{ready[0].api.port}/webhooks/retell")
        finally:
            stop.set()


async def _post(http: aiohttp.ClientSession, url: str, body: bytes, signature: str | None) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-retell-signature"] = signature
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_sdk_signed_webhook_accepted_and_duplicate_dropped(db, mongo_uri, tmp_path) -> None:
    await with_runtime(db, mongo_uri, tmp_path, _accepted_and_deduplicated)


async def _accepted_and_deduplicated(_: Instance, http: aiohttp.ClientSession, url: str) -> None:
    body = _body("call_ended", "call_dup1")
    assert await _post(http, url, body, _sdk_sign(body)) == (200, {"status": "ok"})
    # Retell retries with a fresh signature; event + call id is the same: dropped
    assert await _post(http, url, body, _sdk_sign(body)) == (200, {"status": "duplicate"})
    assert await WebhookEvent.find({"key": "call_ended:call_dup1"}).count() == 1
    # another event of the same call is not a duplicate
    other = _body("call_analyzed", "call_dup1")
    assert (await _post(http, url, other, _sdk_sign(other)))[1] == {"status": "ok"}


async def test_bad_wrong_key_stale_and_missing_signatures_rejected(db, mongo_uri, tmp_path) -> None:
    await with_runtime(db, mongo_uri, tmp_path, _rejected)


async def _rejected(_: Instance, http: aiohttp.ClientSession, url: str) -> None:
    body = _body("call_ended", "call_bad1")
    tampered = body.replace(b"call_bad1", b"call_bad2")
    cases = {
        "tampered body": (tampered, _sdk_sign(body)),
        "wrong key": (body, _sdk_sign(body, key="someone-else")),
        "stale (5 min + 1 s)": (body, _sdk_sign(body, age_ms=301_000)),
        "missing": (body, None),
        "garbage": (body, "v=1,d=nothex"),
    }
    for name, (payload, signature) in cases.items():
        status, _ = await _post(http, url, payload, signature)
        assert status == 401, name
    assert await WebhookEvent.find_all().count() == 0  # nothing rejected was recorded
    # just inside the tolerance is fine
    status, _ = await _post(http, url, body, _sdk_sign(body, age_ms=290_000))
    assert status == 200


async def test_webhook_for_a_job_nobody_holds_is_recorded_for_it(db, mongo_uri, tmp_path) -> None:
    await with_runtime(db, mongo_uri, tmp_path, _recorded_for_idle_job)


async def _recorded_for_idle_job(_: Instance, http: aiohttp.ClientSession, url: str) -> None:
    [job] = await seed_batch("idle", [Person(["+56910000001"])], CallSettings(), MONDAY_1000,
                             status=BatchStatus.PAUSED)
    body = _body("call_ended", "call_orphan", job_id=str(job.id), attempt_id="a1", batch_id="idle",
                 account_id="acme")
    assert (await _post(http, url, body, _sdk_sign(body)))[0] == 200
    record = await CallRecord.find_one({"call_id": "call_orphan"})
    assert record is not None and record.job_id == str(job.id) and record.attempt_id == "a1"


async def test_webhook_wakes_the_call_actor_before_its_next_poll(db, mongo_uri, tmp_path) -> None:
    # One poll interval is 10 business hours = 60 real seconds: only a routed webhook can end tracking sooner.
    clock = SimClock(MONDAY_1000, speed=600)
    people = [Person(["+56910000002"], {"+56910000002": ["success"]})]
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, people)
        [job] = await seed_batch("b1", people, CallSettings(), clock.now())
        config = make_config(db, mongo_uri, tmp_path, poll_interval_s=36_000, skip_idle=False)
        started = time.monotonic()
        await run_campaign(db, config, clock, sim, timeout=30)
        assert time.monotonic() - started < 30
    done = await Job.get(job.id)
    assert done.state == JobState.DONE
    call_id = done.attempts[0].call_id
    assert await WebhookEvent.find_one({"key": f"call_ended:{call_id}"}) is not None
    assert done.attempts[0].ended_at is not None and done.attempts[0].ended_at > done.attempts[0].created_at \
        - timedelta(seconds=1)


async def test_late_webhook_never_replaces_a_fuller_stored_payload(db, mongo_uri, tmp_path) -> None:
    await with_runtime(db, mongo_uri, tmp_path, _late_webhook_keeps_analysis)


async def _late_webhook_keeps_analysis(_: Instance, http: aiohttp.ClientSession, url: str) -> None:
    [job] = await seed_batch("late", [Person(["+56910000002"])], CallSettings(), MONDAY_1000,
                             status=BatchStatus.PAUSED)
    meta = {"job_id": str(job.id), "attempt_id": "a2", "batch_id": "late", "account_id": "acme"}
    analyzed = json.dumps({"event": "call_analyzed", "call": {
        "call_id": "call_late", "call_status": "ended", "metadata": meta,
        "call_analysis": {"call_successful": True}}}).encode()
    assert (await _post(http, url, analyzed, _sdk_sign(analyzed)))[0] == 200
    late = _body("call_ended", "call_late", **meta)  # Retell's retry of an earlier event, arriving last
    assert (await _post(http, url, late, _sdk_sign(late)))[0] == 200
    record = await CallRecord.find_one({"call_id": "call_late"})
    assert record is not None and record.payload["call_analysis"] == {"call_successful": True}
