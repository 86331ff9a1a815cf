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
from actors.mailbox import ActorRef
from speechai.domain.settings import CallSettings
from speechai.retell.signature import sign
from speechai.retell.simulator import RetellSimulator
from speechai.runtime.call_actor import CallEvent
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
    # routed to the live actor: deduplicated in memory, no database write on the call's hot path
    assert await WebhookEvent.find_one({"key": f"call_ended:{call_id}"}) is None
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


async def _raw_post(port: int, headers: bytes, body: bytes = b"") -> int:
    """POST /webhooks/retell with header bytes as given; the answer's status."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"POST /webhooks/retell HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers
                          + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = b""
        with anyio.fail_after(10):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return int(answer.split(b" ", 2)[1])


async def test_malformed_signature_headers_are_401(db, mongo_uri, tmp_path) -> None:
    await with_runtime(db, mongo_uri, tmp_path, _malformed_headers)


async def _malformed_headers(inst: Instance, http: aiohttp.ClientSession, url: str) -> None:
    body = _body("call_ended", "call_sig1")
    good = _sdk_sign(body)
    digest = good.split(",d=")[1]
    for header in (f"v={'9' * 5000},d={digest}", f"v={'1' * 16},d={digest}", f"v=1,d={digest.upper()}",
                   f"v=1,d={digest[:63]}", f"v={good[2:15]},d={digest}0", f"v=\u0661\u0662,d={digest}",
                   f"{good},{good}", f"v=-1,d={digest}", " ", "v=,d="):
        status, answer = await _post(http, url, body, header)
        assert status == 401, header[:40]
        assert "x-retell-signature" in answer["error"]
    for raw in (b"x-retell-signature: v=1\xff,d=ab\r\n", b"x-retell-signature: \x80\x81\r\n"):
        assert await _raw_post(inst.api.port, raw, body) == 401
    assert await WebhookEvent.find_all().count() == 0


async def test_oversized_webhook_bodies_are_413_without_being_read(db, mongo_uri, tmp_path) -> None:
    await with_runtime(db, mongo_uri, tmp_path, _oversized)


async def _oversized(inst: Instance, http: aiohttp.ClientSession, url: str) -> None:
    big = b'{"event": "call_ended", "call": {"call_id": "c", "x": "' + b"y" * (3 * 2**20) + b'"}}'
    signed = sign(big, API_KEY, int(time.time() * 1000))
    for signature in (None, signed):
        status, answer = await _post(http, url, big, signature)
        assert status == 413 and "limit" in answer["error"]

    async def chunked():  # no Content-Length: the cap applies while reading
        for i in range(0, len(big), 2**16):
            yield big[i:i + 2**16]

    async with http.post(url, data=chunked(), headers={"x-retell-signature": signed}) as r:
        assert r.status == 413
    async with http.post(url, data=chunked()) as r:  # unsigned: refused before the body is read
        assert r.status == 401
    assert await WebhookEvent.find_all().count() == 0


async def test_signed_bodies_of_the_wrong_shape_are_400_and_the_event_is_not_lost(db, mongo_uri, tmp_path) -> None:
    await with_runtime(db, mongo_uri, tmp_path, _wrong_shapes)


async def _wrong_shapes(inst: Instance, http: aiohttp.ClientSession, url: str) -> None:
    [job] = await seed_batch("shape", [Person(["+56910000003"])], CallSettings(), MONDAY_1000,
                             status=BatchStatus.PAUSED)
    call = {"call_id": "call_shape", "call_status": "ended"}
    bad = [{"event": "call_ended", "call": {**call, "metadata": "job"}},
           {"event": "call_ended", "call": {**call, "metadata": ["job"]}},
           {"event": "call_ended", "call": {**call, "metadata": {"job_id": {"$ne": 1}}}},
           {"event": "call_ended", "call": {**call, "metadata": {"attempt_id": 5}}},
           {"event": "call_ended", "call": {**call, "call_id": 12}},
           {"event": "call_ended", "call": {**call, "call_id": "x" * 500}},
           {"event": "call_ended", "call": {**call, "call_id": "a b"}},
           {"event": ["call_ended"], "call": call}, {"event": "call_ended", "call": "call_shape"},
           {"event": "call_ended"}, [1, 2], "call_ended"]
    raw = [b'{"event": "call_ended", "call": {"call_id": "call_shape", "duration_ms": NaN}}',
           b'{"event": "call_ended", "call": {"call_id": "call_shape", "duration_ms": Infinity}}',
           b'{"event": "call_ended", "call": {"call_id": "call_shape", "duration_ms": ' + str(2**63).encode() + b"}}",
           b'{"event": "call_ended", "call": {"call_id": "call_shape", "duration_ms": -' + str(2**63 + 1).encode()
           + b"}}",
           b'{"event": "call_ended", "call": {"call_id": "call_shape", "x": ' + b"[" * 100_000 + b"]" * 100_000
           + b"}}",
           b'{"event": "call_ended", "call": {"call_id": "call_shape", "x": ' + b"[" * 40 + b"]" * 40 + b"}}",
           b'{"event": "call_ended", "call": {"call_id": "call_shape", "x": "\\udc00"}}',
           b'{"event": "call_ended", "call": {"call_id": "call_shape", "\\u0000": 1}}',
           b'{"event": "call_ended", "call": {"call_id": "call_shape"}', b"\xff\xfe", b""]
    for body in [json.dumps(b).encode() for b in bad] + raw:
        status, answer = await _post(http, url, body, sign(body, API_KEY, int(time.time() * 1000)))
        assert status == 400, body[:120]
        assert answer["error"], body[:120]
    assert await WebhookEvent.find_all().count() == 0
    # a signed int at the very edge of 64 bits is kept as it is
    meta = {"job_id": str(job.id), "attempt_id": "a3", "batch_id": "shape", "account_id": "acme"}
    good = json.dumps({"event": "call_ended", "call": {**call, "metadata": meta, "duration_ms": 2**63 - 1}}).encode()
    assert await _post(http, url, good, _sdk_sign(good)) == (200, {"status": "ok"})
    record = await CallRecord.find_one({"call_id": "call_shape"})
    assert record is not None and record.job_id == str(job.id) and record.payload["duration_ms"] == 2**63 - 1
    # an event this runtime does not handle: answered, so Retell stops retrying, and nothing is recorded
    other = json.dumps({"event": "transcript_updated", "call": {**call, "metadata": meta}}).encode()
    status, answer = await _post(http, url, other, _sdk_sign(other))
    assert status == 200 and answer["status"] == "ignored"
    assert await WebhookEvent.find({"event": "transcript_updated"}).count() == 0


async def test_a_webhook_that_cannot_be_handled_is_503_and_handled_on_the_retry(db, mongo_uri, tmp_path) -> None:
    await with_runtime(db, mongo_uri, tmp_path, _handled_on_retry)


async def _handled_on_retry(inst: Instance, http: aiohttp.ClientSession, url: str) -> None:
    [job] = await seed_batch("retry", [Person(["+56910000004"])], CallSettings(), MONDAY_1000,
                             status=BatchStatus.PAUSED)
    # the job's actor is going away: its mailbox no longer takes messages
    send, receive = anyio.create_memory_object_stream[CallEvent](1)
    receive.close()
    inst.rt.actors[str(job.id)] = ActorRef(send)
    body = _body("call_ended", "call_retry", job_id=str(job.id), attempt_id="a4", batch_id="retry",
                 account_id="acme")
    status, answer = await _post(http, url, body, _sdk_sign(body))
    assert status == 503 and "again" in answer["error"]
    assert await WebhookEvent.find_one({"key": "call_ended:call_retry"}) is None  # not marked as seen
    del inst.rt.actors[str(job.id)]
    # Retell's retry: handled (the payload kept for the job), then recorded; a third copy is a duplicate
    assert await _post(http, url, body, _sdk_sign(body)) == (200, {"status": "ok"})
    assert (await CallRecord.find_one({"call_id": "call_retry"})).attempt_id == "a4"
    assert await _post(http, url, body, _sdk_sign(body)) == (200, {"status": "duplicate"})
    assert await WebhookEvent.find({"key": "call_ended:call_retry"}).count() == 1
