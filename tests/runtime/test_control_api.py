"""The control endpoint over real HTTP on a running runtime instance (embedded MongoDB, simulator)."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import anyio
import anyio.abc
import pytest
from bson import ObjectId
from structlog.testing import capture_logs

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.runtime.control_api import ControlApi
from speechai.runtime.webhooks import WebhookReceiver
from speechai.store.models import Account, Batch, BatchStatus, DoNotCall, Job
from tests.runtime.conftest import SUNDAY
from tests.runtime.harness import API_KEY, Instance, Person, make_config, seed_batch
from tests.runtime.test_policy_e2e import TOKEN, drive


@pytest.fixture
def running(control_instance):
    return control_instance


async def test_health_is_open_and_everything_else_needs_the_token(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(f"{base}/health") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with anonymous.get(f"{base}/batches") as r:
                assert r.status == 401
            async with anonymous.get(f"{base}/batches", headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401 and "token" in (await r.json())["error"]
            async with anonymous.post(f"{base}/accounts/acme/topup", json={"cents": 5}) as r:
                assert r.status == 401
        assert (await Account.get("acme")).balance_cents == 100  # the refused top-up changed nothing
        async with http.get(f"{base}/batches") as r:
            assert r.status == 200 and [b["id"] for b in (await r.json())["items"]] == ["b1"]

    await running(body)


async def test_pause_resume_and_unknown_batch(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        async with http.post(f"{base}/batches/b1/pause") as r:
            assert r.status == 200 and (await r.json())["status"] == "paused"
        assert (await Batch.get("b1")).status == BatchStatus.PAUSED
        async with http.get(f"{base}/batches/b1") as r:
            got = await r.json()
            assert got["status"] == "paused" and got["status_reason"].startswith("paused by operator (key ")
            assert got["jobs"]["pending"] == 1
        async with http.post(f"{base}/batches/b1/resume") as r:
            assert r.status == 200 and (await r.json())["status"] == "active"
        assert (await Batch.get("b1")).status == BatchStatus.ACTIVE
        for method, path in (("POST", "/batches/nope/pause"), ("POST", "/batches/nope/resume"),
                             ("GET", "/batches/nope"), ("PUT", "/batches/nope/settings")):
            async with http.request(method, f"{base}{path}", json={}) as r:
                assert r.status == 404, path
                assert "nope" in (await r.json())["error"]

    await running(body)


async def test_settings_validation_names_field_and_value(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        cases = [({"max_attempts": 0}, "max_attempts", 0),
                 ({"timezone": "Mars/Olympus"}, "timezone", "Mars/Olympus"),
                 ({"days_of_week": [1, 9]}, "days_of_week", [1, 9]),
                 ({"priority": 101}, "priority", 101)]
        for payload, field, value in cases:
            async with http.put(f"{base}/batches/b1/settings", json=payload) as r:
                assert r.status == 422, payload
                problems = (await r.json())["problems"]
                assert any(p["field"] == field and p["value"] == value for p in problems), problems
        # a preset that leaves nothing to dial is refused, naming the hours asked for
        bad = {"preset": "chile", "allowed_hours": [{"start": "20:30", "end": "22:00"}]}
        async with http.put(f"{base}/batches/b1/settings", json=bad) as r:
            assert r.status == 422 and "20:30-22:00" in await r.text()
        async with http.put(f"{base}/batches/b1/settings", data="{not json") as r:
            assert r.status == 400
        assert (await Batch.get("b1")).call_settings.days_of_week == [1]  # nothing stored so far
        good = {"max_attempts": 2, "days_of_week": [2, 3], "preset": "us_reg_f", "timezone": "America/Chicago"}
        async with http.put(f"{base}/batches/b1/settings", json=good) as r:
            assert r.status == 200
        stored = (await Batch.get("b1")).call_settings
        assert (stored.max_attempts, stored.days_of_week, stored.preset.value) == (2, [2, 3], "us_reg_f")

    await running(body)


async def test_top_up_validation_and_effect(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        await Account.get_pymongo_collection().update_one({"_id": "acme"},
                                                          {"$set": {"suspended_reason": "out of credit"}})
        for payload in ({"cents": -5}, {"cents": "10"}, {"cents": 1.5}, {"minutes": True}):
            async with http.post(f"{base}/accounts/acme/topup", json=payload) as r:
                assert r.status == 422, payload
                name = next(iter(payload))
                assert name in (await r.json())["error"]
        async with http.post(f"{base}/accounts/acme/topup", json=[1]) as r:
            assert r.status == 400
        async with http.post(f"{base}/accounts/nobody/topup", json={"cents": 5}) as r:
            assert r.status == 404
        assert (await Account.get("acme")).balance_cents == 100
        async with http.post(f"{base}/accounts/acme/topup", json={"cents": 250, "minutes": 3}) as r:
            assert r.status == 200
            got = await r.json()
        assert got["balance_cents"] == 350 and got["minutes_balance_ms"] == 180_000
        assert got["suspended_reason"] is None  # a top-up lifts an out-of-credit suspension
        assert (await Account.get("acme")).balance_cents == 350

    await running(body)


async def test_do_not_call_add_and_list(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        for payload in ({}, {"key": ""}, {"key": "   "}, {"key": 56911}):
            async with http.post(f"{base}/accounts/acme/do-not-call", json=payload) as r:
                assert r.status == 422, payload
        async with http.post(f"{base}/accounts/acme/do-not-call",
                             json={"key": " +56911112222 ", "reason": "asked by phone"}) as r:
            assert r.status == 201 and (await r.json()) == {"key": "+56911112222", "status": "added"}
        async with http.post(f"{base}/accounts/acme/do-not-call", json={"key": "+56911112222"}) as r:
            assert r.status == 200 and (await r.json())["status"] == "already listed"
        async with http.get(f"{base}/accounts/acme/do-not-call") as r:
            listed = await r.json()
        assert [(e["key"], e["reason"]) for e in listed["items"]] == [("+56911112222", "asked by phone")]
        assert listed["next_cursor"] is None
        assert await DoNotCall.find({"account_id": "acme"}).count() == 1
        async with http.get(f"{base}/accounts/nobody/do-not-call") as r:
            assert r.status == 404

    await running(body)


async def test_get_job(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        async with http.get(f"{base}/jobs/{job.id}") as r:
            assert r.status == 200
            got = await r.json()
        assert got["batch_id"] == "b1" and got["state"] == "pending"
        assert got["phones"][0]["number"] == "+56911112222"
        async with http.get(f"{base}/jobs/not-an-id") as r:
            assert r.status == 400
        async with http.get(f"{base}/jobs/{ObjectId()}") as r:
            assert r.status == 404

    await running(body)


async def test_token_file_is_used_without_the_environment(db, mongo_uri, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SPEECHAI_CONTROL_TOKEN", raising=False)
    clock = SimClock(SUNDAY, speed=1)
    seen = {}
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=1) as sim:
        await seed_batch("b1", [Person(["+56911113333"])], CallSettings(days_of_week=[1]), clock.now())

        async def body(inst: Instance, http: aiohttp.ClientSession, base: str) -> None:
            path = tmp_path / "control-token"
            token = path.read_text().strip()
            seen["mode"] = stat.S_IMODE(path.stat().st_mode)
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{base}/batches", headers={"Authorization": f"Bearer {token}"}) as r:
                    seen["with_file_token"] = r.status
                async with client.get(f"{base}/batches", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    seen["with_other_token"] = r.status

        await drive(db, make_config(db, mongo_uri, tmp_path), clock, sim, body, within=30)
    assert seen == {"mode": 0o600, "with_file_token": 200, "with_other_token": 401}


async def test_batches_and_do_not_call_lists_are_paginated(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        for i in range(2, 7):
            await seed_batch(f"b{i}", [Person([f"+5691111{i:04d}"])] * i, CallSettings(days_of_week=[1]), SUNDAY)
        seen, cursor, pages = [], None, 0
        while True:
            url = f"{base}/batches?limit=2" + (f"&cursor={cursor}" if cursor else "")
            async with http.get(url) as r:
                assert r.status == 200
                page = await r.json()
            assert len(page["items"]) <= 2
            seen += page["items"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3 and [b["id"] for b in seen] == [f"b{i}" for i in range(1, 7)]
        # the runtime may be dialing some of them meanwhile: the totals per batch are fixed
        assert [sum(b["jobs"].values()) for b in seen] == [1, 2, 3, 4, 5, 6]
        async with http.get(f"{base}/batches") as r:  # default page holds them all
            page = await r.json()
            assert len(page["items"]) == 6 and page["next_cursor"] is None

        keys = [f"+5699000{i:04d}" for i in range(5)]
        for key in reversed(keys):
            async with http.post(f"{base}/accounts/acme/do-not-call", json={"key": key}) as r:
                assert r.status == 201
        async with http.get(f"{base}/accounts/acme/do-not-call?limit=3") as r:
            first = await r.json()
        async with http.get(f"{base}/accounts/acme/do-not-call",
                            params={"limit": "3", "cursor": first["next_cursor"]}) as r:
            second = await r.json()
        assert [e["key"] for e in first["items"] + second["items"]] == keys  # sorted by key
        assert second["next_cursor"] is None

    await running(body)


async def test_page_parameters_are_validated(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        for path in ("/batches", "/accounts/acme/do-not-call"):
            for query, needle in (("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "'abc'"),
                                  ("limit=-1", "limit"), ("limit=1&limit=2", "limit"),
                                  ("cursor=%%%", "cursor"), ("cursor=_w", "cursor"), ("page=2", "'page'")):
                async with http.get(f"{base}{path}?{query}") as r:
                    assert r.status == 422, (path, query)
                    assert needle in (await r.json())["error"], (path, query)

    await running(body)


async def test_settings_put_and_patch_merge_and_keep_the_preset(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        with capture_logs() as logs:
            async with http.patch(f"{base}/batches/b1/settings", json={"max_attempts": 3}) as r:
                assert r.status == 200
                got = await r.json()
        assert got["changes"] == {"max_attempts": {"before": 6, "after": 3}}
        assert got["call_settings"]["days_of_week"] == [1] and got["call_settings"]["max_attempts"] == 3
        changed = [e for e in logs if e["event"] == "settings_changed"]
        assert changed and changed[0]["log_level"] == "warning" and changed[0]["batch_id"] == "b1"
        assert not any(e["event"] == "preset_changed" for e in logs)

        with capture_logs() as logs:
            async with http.put(f"{base}/batches/b1/settings", json={"preset": "chile"}) as r:
                assert r.status == 200
                got = await r.json()
        assert got["changes"]["preset"] == {"before": "none", "after": "chile"}
        assert [(e["before"], e["after"]) for e in logs if e["event"] == "preset_changed"] == [("none", "chile")]
        # a later partial update, by PUT or PATCH, leaves the preset alone
        for method, patch in (("PUT", {"ring_timeout_s": 40}), ("PATCH", {"retry_delay_min": {"no_answer": 90}})):
            async with http.request(method, f"{base}/batches/b1/settings", json=patch) as r:
                assert r.status == 200
                assert "preset" not in (await r.json())["changes"]
        stored = (await Batch.get("b1")).call_settings
        assert (stored.preset.value, stored.max_attempts, stored.ring_timeout_s) == ("chile", 3, 40)
        assert stored.retry_delay_min.no_answer == 90 and stored.retry_delay_min.voicemail == 120
        # turning it off only when named
        async with http.patch(f"{base}/batches/b1/settings", json={"preset": "none"}) as r:
            assert r.status == 200 and (await r.json())["changes"]["preset"]["after"] == "none"
        # the same body again: nothing changes, nothing is logged
        with capture_logs() as logs:
            async with http.patch(f"{base}/batches/b1/settings", json={"preset": "none"}) as r:
                assert r.status == 200 and (await r.json())["changes"] == {}
        assert not [e for e in logs if e["event"] == "settings_changed"]

    await running(body)


async def test_account_limits_are_set_validated_and_shown(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        for payload, field in (({"max_concurrent_calls": 0}, "max_concurrent_calls"),
                               ({"max_concurrent_calls": 10_001}, "max_concurrent_calls"),
                               ({"max_concurrent_calls": None}, "max_concurrent_calls"),
                               ({"max_concurrent_calls": "5"}, "max_concurrent_calls"),
                               ({"daily_call_limit": 0}, "daily_call_limit"),
                               ({"daily_call_limit": 10**7 + 1}, "daily_call_limit"),
                               ({"daily_call_limit": 10**40}, "daily_call_limit"),
                               ({"daily_call_limit": True}, "daily_call_limit"),
                               ({"max_calls": 5}, "max_calls")):
            async with http.patch(f"{base}/accounts/acme/settings", json=payload) as r:
                assert r.status == 422, payload
                assert field in (await r.json())["error"], payload
        async with http.put(f"{base}/accounts/acme/settings",
                            json={"max_concurrent_calls": 7, "daily_call_limit": 500}) as r:
            assert r.status == 200
            got = await r.json()
        assert got["changes"] == {"max_concurrent_calls": {"before": 20, "after": 7},
                                  "daily_call_limit": {"before": None, "after": 500}}
        async with http.patch(f"{base}/accounts/acme/settings", json={"daily_call_limit": None}) as r:
            assert r.status == 200
        async with http.get(f"{base}/accounts/acme") as r:
            shown = await r.json()
        assert (shown["max_concurrent_calls"], shown["daily_call_limit"]) == (7, None)
        account = await Account.get("acme")
        assert (account.max_concurrent_calls, account.daily_call_limit) == (7, None)
        async with http.patch(f"{base}/accounts/nobody/settings", json={"max_concurrent_calls": 2}) as r:
            assert r.status == 404

    await running(body)


# --- the server itself: connections, limits, start-up warnings --------------------------------------


class _Scheduler:
    def tell_nowait(self, msg: object) -> bool:
        return True


@asynccontextmanager
async def _bare_api(host: str = "127.0.0.1", token: str = "t" * 32, **limits: float) -> AsyncIterator[ControlApi]:
    """The control endpoint alone, on loopback, with the given limits (the database fixture set up)."""
    api = ControlApi(token=token, scheduler_ref=_Scheduler(), webhooks=WebhookReceiver(None, API_KEY),  # type: ignore[arg-type]
                     instance_id="bare", clock=SimClock(SUNDAY), **limits)  # type: ignore[arg-type]
    await api.start(host, 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(api.serve_forever)
        try:
            yield api
        finally:
            tg.cancel_scope.cancel()


async def _closed_within(stream: anyio.abc.SocketStream, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after ``seconds``."""
    received = b""
    with anyio.fail_after(seconds):
        try:
            while True:
                received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
            return received


async def test_a_silent_half_sent_request_is_closed_by_the_server(db) -> None:
    async with _bare_api(keepalive_timeout_s=1.0) as api:
        async with await anyio.connect_tcp("127.0.0.1", api.port) as stream:
            await stream.send(b"GET /heal")  # half a request line, then nothing
            assert await _closed_within(stream, 10) == b""
        async with await anyio.connect_tcp("127.0.0.1", api.port) as stream:
            await stream.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # headers never finished
            assert await _closed_within(stream, 10) == b""
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{api.port}/health") as r:
            assert r.status == 200  # and the server serves on


async def test_a_body_that_never_arrives_times_out_and_excess_requests_are_refused(db) -> None:
    await Account(id="acme").insert()
    token = "t" * 32
    async with _bare_api(token=token, request_timeout_s=1.5, max_concurrent_requests=1) as api:
        async with await anyio.connect_tcp("127.0.0.1", api.port) as stream:
            await stream.send(f"POST /accounts/acme/topup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                              "Content-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"cents\"".encode())
            await anyio.sleep(0.3)
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{api.port}/health") as r:
                assert r.status == 503 and "requests in progress" in (await r.json())["error"]
            answer = b""
            with anyio.fail_after(10):
                while b"}" not in answer:
                    answer += await stream.receive()
        assert answer.startswith(b"HTTP/1.1 503") and b"not completed within 1.5 s" in answer
        assert b"Connection: close" in answer  # the half-read body cannot carry another request
        assert (await Account.get("acme")).balance_cents == 0
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{api.port}/health") as r:
            assert r.status == 200


async def test_start_warns_about_an_exposed_host_and_a_short_token(db) -> None:
    with capture_logs() as logs:
        async with _bare_api(host="0.0.0.0", token="short"):
            pass
    events = {e["event"]: e for e in logs if e["log_level"] == "warning"}
    assert events["control_endpoint_exposed"]["host"] == "0.0.0.0"
    assert events["control_token_short"]["chars"] == 5
    with capture_logs() as logs:
        async with _bare_api(host="127.0.0.1", token="x" * 24):
            pass
    assert not [e for e in logs if e["log_level"] == "warning"]
