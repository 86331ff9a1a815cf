"""The control endpoint over real HTTP on a running runtime instance (embedded MongoDB, simulator)."""

from __future__ import annotations

import stat

import aiohttp
import pytest
from bson import ObjectId

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
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
            assert r.status == 200 and [b["id"] for b in await r.json()] == ["b1"]

    await running(body)


async def test_pause_resume_and_unknown_batch(running) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, job: Job) -> None:
        async with http.post(f"{base}/batches/b1/pause") as r:
            assert r.status == 200 and (await r.json())["status"] == "paused"
        assert (await Batch.get("b1")).status == BatchStatus.PAUSED
        async with http.get(f"{base}/batches/b1") as r:
            got = await r.json()
            assert got["status"] == "paused" and got["status_reason"] == "paused by operator"
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
        assert [(e["key"], e["reason"]) for e in listed] == [("+56911112222", "asked by phone")]
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
