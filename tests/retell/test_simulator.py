"""Simulator behaviour over real HTTP: progression by clock, outcomes, webhooks, dial log, CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from retell.lib import webhook_auth
from retell.types import PhoneCallResponse

from actors.clock import Clock, RealClock, SimClock
from speechai.retell.client import RetellClient
from speechai.retell.errors import RateLimited
from speechai.retell.sim_outcomes import OutcomeRates
from speechai.retell.simulator import RetellSimulator, add_arguments, parse_script, run_from_args

API_KEY = "test-key-not-real"  # the simulator fixture's key (conftest)
FROM = "+56221234567"
TO = "+56984876639"


def ms(clock: Clock) -> int:
    return int(clock.now().timestamp() * 1000)


async def dial(client: RetellClient, key: str, to: str = TO, **kwargs: Any) -> dict[str, Any]:
    return await client.create_phone_call(from_number=FROM, to_number=to, idempotency_key=key, **kwargs)


@asynccontextmanager
async def hooked(clock: SimClock, url: str, **kwargs: Any) -> AsyncIterator[tuple[RetellSimulator, RetellClient]]:
    async with RetellSimulator(api_key=API_KEY, clock=clock, webhook_url=url, **kwargs) as sim:
        async with RetellClient(sim.base_url, API_KEY, timeout_s=2.0) as client:
            yield sim, client


async def test_success_progression(clock: SimClock, sim: RetellSimulator, client: RetellClient) -> None:
    sim.script(TO, "success")
    call = await dial(client, "att-1", dynamic_variables={"nombre": "Ana", "monto": 85000})
    cid = call["call_id"]
    clock.advance(3)  # rings at least 4 s
    assert (await client.get_call(cid))["call_status"] == "registered"
    clock.advance(13)  # answered within 15 s
    ongoing = await client.get_call(cid)
    assert ongoing["call_status"] == "ongoing"
    assert ongoing["start_timestamp"] <= ms(clock) and "end_timestamp" not in ongoing
    clock.advance(200)  # talks at most 180 s
    ended = await client.get_call(cid)
    PhoneCallResponse.model_validate(ended)
    assert ended["call_status"] == "ended"
    assert ended["disconnection_reason"] == "agent_hangup"
    assert ended["start_timestamp"] == ongoing["start_timestamp"]
    assert ended["duration_ms"] == ended["end_timestamp"] - ended["start_timestamp"]
    assert 60_000 <= ended["duration_ms"] <= 180_000
    analysis = ended["call_analysis"]
    assert analysis["call_successful"] is True and analysis["in_voicemail"] is False
    assert ended["collected_dynamic_variables"]["promised_amount"] == "85000"
    promised = datetime.fromisoformat(ended["collected_dynamic_variables"]["promised_payment_date"])
    assert 1 <= (promised.date() - clock.now().date()).days <= 10
    assert analysis["custom_analysis_data"]["promised_amount"] == "85000"
    cost = ended["call_cost"]
    assert cost["combined_cost"] == pytest.approx(sum(p["cost"] for p in cost["product_costs"]), abs=1e-3)
    # cents: a 1-3 minute call costs between roughly 10 and 30 cents at the simulated prices
    assert 5 < cost["combined_cost"] < 40
    assert cost["total_duration_seconds"] == pytest.approx(ended["duration_ms"] / 1000, abs=0.01)
    assert ended["transcript"] and ended["recording_url"] and ended["public_log_url"]
    assert ended["direction"] == "outbound" and ended["call_type"] == "phone_call"
    assert ended["retell_llm_dynamic_variables"] == {"nombre": "Ana", "monto": "85000"}


@pytest.mark.parametrize(
    ("outcome", "status", "reason", "successful", "voicemail"),
    [
        ("success", "ended", "agent_hangup", True, False),
        ("answered", "ended", "user_hangup", False, False),
        ("voicemail", "ended", "voicemail_reached", False, True),
        ("long_call", "ended", "max_duration_reached", False, False),
        ("no_answer", "not_connected", "dial_no_answer", False, False),
        ("busy", "not_connected", "dial_busy", False, False),
        ("declined", "not_connected", "user_declined", False, False),
        ("invalid_number", "not_connected", "invalid_destination", False, False),
        ("dial_failed", "not_connected", "dial_failed", False, False),
        ("provider_error", "not_connected", "telephony_provider_unavailable", False, False),
    ],
)
async def test_outcome_semantics(
    clock: SimClock,
    sim: RetellSimulator,
    client: RetellClient,
    outcome: str,
    status: str,
    reason: str,
    successful: bool,
    voicemail: bool,
) -> None:
    sim.script(TO, outcome)
    call = await dial(client, f"att-{outcome}")
    clock.advance(2 * 3600)
    final = await client.get_call(call["call_id"])
    PhoneCallResponse.model_validate(final)
    assert (final["call_status"], final["disconnection_reason"]) == (status, reason)
    assert final["call_analysis"]["call_successful"] is successful
    assert final["call_analysis"]["in_voicemail"] is voicemail
    if status == "not_connected":
        assert final["duration_ms"] == 0 and final["call_cost"]["combined_cost"] == 0
    else:
        assert final["duration_ms"] > 0 and final["call_cost"]["combined_cost"] > 0


async def test_ring_and_max_duration_follow_agent_override(
    clock: SimClock, sim: RetellSimulator, client: RetellClient
) -> None:
    sim.script("+56911111111", "no_answer")
    sim.script("+56922222222", "long_call")
    override = {"agent": {"ring_duration_ms": 20_000, "max_call_duration_ms": 120_000}}
    unanswered = await dial(client, "att-na", to="+56911111111", agent_override=override)
    long = await dial(client, "att-long", to="+56922222222", agent_override=override)
    clock.advance(19.5)
    assert (await client.get_call(unanswered["call_id"]))["call_status"] == "registered"
    clock.advance(1)
    assert (await client.get_call(unanswered["call_id"]))["call_status"] == "not_connected"
    clock.advance(100)
    assert (await client.get_call(long["call_id"]))["call_status"] == "ongoing"
    clock.advance(40)
    ended = await client.get_call(long["call_id"])
    assert ended["call_status"] == "ended" and ended["disconnection_reason"] == "max_duration_reached"
    assert ended["duration_ms"] == 120_000


async def test_script_consumed_per_dial_last_repeats(
    clock: SimClock, sim: RetellSimulator, client: RetellClient
) -> None:
    sim.script(TO, "no_answer", "busy", "success")
    ids = [(await dial(client, f"att-s{i}"))["call_id"] for i in range(4)]
    clock.advance(3600)
    reasons = [(await client.get_call(cid))["disconnection_reason"] for cid in ids]
    assert reasons == ["dial_no_answer", "dial_busy", "agent_hangup", "agent_hangup"]


async def test_unscripted_outcomes_follow_seeded_rates(clock: SimClock) -> None:
    async def reasons(seed: int, rates: OutcomeRates) -> list[str]:
        async with RetellSimulator(api_key=API_KEY, clock=clock, rates=rates, seed=seed) as sim:
            async with RetellClient(sim.base_url, API_KEY) as client:
                ids = [(await dial(client, f"s{seed}-{i}", to=f"+5699000{i:04d}"))["call_id"] for i in range(15)]
                clock.advance(7200)
                return [(await client.get_call(cid))["disconnection_reason"] for cid in ids]

    mixed = OutcomeRates.parse("success=0.5,busy=0.5")
    first, again = await reasons(7, mixed), await reasons(7, mixed)
    assert first == again
    assert set(first) == {"agent_hangup", "dial_busy"}
    assert set(await reasons(1, OutcomeRates.parse("declined=1"))) == {"user_declined"}
    with pytest.raises(ValueError):
        OutcomeRates.parse("teleport=1")


async def test_webhooks_for_connected_call_are_signed_and_ordered(clock: SimClock, receiver: Any) -> None:
    async with hooked(clock, receiver.url) as (sim, client):
        sim.script(TO, "success")
        call = await dial(client, "att-wh", metadata={"attempt_id": "att-wh"})
        clock.advance(3600)
        await receiver.wait_for(3)
    events = receiver.events()
    assert [e for e, _ in events] == ["call_started", "call_ended", "call_analyzed"]
    started, ended, analyzed = (c for _, c in events)
    assert {c["call_id"] for c in (started, ended, analyzed)} == {call["call_id"]}
    assert started["call_status"] == "ongoing" and "end_timestamp" not in started
    assert ended["call_status"] == "ended" and "call_analysis" not in ended
    assert analyzed["call_analysis"]["call_successful"] is True
    assert analyzed["metadata"] == {"attempt_id": "att-wh"}
    for _, c in events:
        PhoneCallResponse.model_validate(c)
    sdk_verify = webhook_auth.symmetric["verify"]
    for body, signature in receiver.received:
        assert signature is not None
        # Signatures carry wall time even under a simulated business clock: receivers check freshness.
        now_ms = ms(RealClock())
        assert sdk_verify(body.decode(), API_KEY, signature, {"timestamp": now_ms})
        assert not sdk_verify(body.decode(), "other-key", signature, {"timestamp": now_ms})
        assert not sdk_verify(body.decode(), API_KEY, signature, {"timestamp": now_ms + 10 * 60_000})


async def test_not_connected_call_gets_no_call_started(clock: SimClock, receiver: Any) -> None:
    async with hooked(clock, receiver.url) as (sim, client):
        sim.script(TO, "no_answer")
        await dial(client, "att-nowh")
        clock.advance(600)
        await receiver.wait_for(2)
        await anyio.sleep(0.05)
    events = receiver.events()
    assert [e for e, _ in events] == ["call_ended", "call_analyzed"]
    assert events[0][1]["call_status"] == "not_connected"
    assert events[0][1]["disconnection_reason"] == "dial_no_answer"


async def test_webhook_delivery_is_retried(clock: SimClock, receiver: Any) -> None:
    receiver.fail_first = 2
    async with hooked(clock, receiver.url) as (sim, client):
        sim.script(TO, "busy")
        await dial(client, "att-retry")
        clock.advance(600)
        await receiver.wait_for(2)
    assert [e for e, _ in receiver.events()] == ["call_ended", "call_analyzed"]
    assert receiver.attempts == 4


async def test_stop_call_sends_call_ended_at_once(clock: SimClock, receiver: Any) -> None:
    async with hooked(clock, receiver.url) as (sim, client):
        sim.script(TO, "long_call")
        call = await dial(client, "att-stopwh")
        clock.advance(30)
        await receiver.wait_for(1)
        await client.stop_call(call["call_id"])
        await receiver.wait_for(3)  # no clock advance needed
    events = receiver.events()
    assert [e for e, _ in events] == ["call_started", "call_ended", "call_analyzed"]
    assert events[1][1]["disconnection_reason"] == "manual_stopped"
    assert events[1][1]["end_timestamp"] == ms(clock)


async def test_fast_clock_runs_calls_to_the_end(receiver: Any) -> None:
    fast = SimClock(datetime(2025, 3, 3, 13, 0, tzinfo=UTC), speed=3000)
    async with hooked(fast, receiver.url) as (sim, client):
        sim.script(TO, "answered")
        call = await dial(client, "att-fast")
        await receiver.wait_for(3, within_s=5)
        final = await client.get_call(call["call_id"])
    assert final["call_status"] == "ended" and final["disconnection_reason"] == "user_hangup"
    assert [e for e, _ in receiver.events()] == ["call_started", "call_ended", "call_analyzed"]


async def test_dial_log_and_admin_endpoint(clock: SimClock, tmp_path: Path) -> None:
    log_path = tmp_path / "dials.jsonl"
    async with RetellSimulator(api_key=API_KEY, clock=clock, dial_log=log_path) as sim:
        async with RetellClient(sim.base_url, API_KEY) as client:
            first = await dial(client, "att-log1", metadata={"attempt_id": "att-log1"})
            await dial(client, "att-log1")
            await dial(client, "att-log2", to="+56900000001")
        async with aiohttp.ClientSession() as http, http.get(f"{sim.base_url}/_sim/dials") as resp:
            admin = await resp.json()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [d["idempotency_key"] for d in lines] == ["att-log1", "att-log2"]
    assert lines[0]["call_id"] == first["call_id"] and lines[0]["metadata"] == {"attempt_id": "att-log1"}
    assert lines[0]["at"] == clock.now().isoformat()
    assert admin == lines


async def test_cli_serves_until_cancelled(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--port", "0", "--api-key", API_KEY, "--speed", "1000", "--script", f"{TO}=busy,success",
         "--rates", "no_answer=1", "--dial-log", str(tmp_path / "d.jsonl")]
    )
    assert parse_script(f"{TO}=busy, success") == (TO, ["busy", "success"])
    with pytest.raises(ValueError):
        parse_script("no-outcomes=")
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_from_args, args)
        with anyio.fail_after(5):
            while not (out := capsys.readouterr().out.strip()):  # noqa: ASYNC110 (stdout has no event)
                await anyio.sleep(0.02)
        async with RetellClient(out.splitlines()[-1], API_KEY) as client:
            call = await dial(client, "att-cli")
            other = await dial(client, "att-cli2", to="+56900000002")
            await anyio.sleep(0.3)  # 300 business seconds: both calls are over
            assert (await client.get_call(call["call_id"]))["disconnection_reason"] == "dial_busy"
            assert (await client.get_call(other["call_id"]))["disconnection_reason"] == "dial_no_answer"
        tg.cancel_scope.cancel()
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 2


async def test_five_thousand_live_calls_bookkeeping(clock: SimClock) -> None:
    """Indexes and the live-call set stay exact at scale: the limit holds to the call, each call is
    found by its metadata, pages cover every call once, and ends and stops free exactly their places."""
    n = 5000
    async with RetellSimulator(api_key=API_KEY, clock=clock, concurrency_limit=n,
                               rates=OutcomeRates.parse("long_call=1")) as sim:
        async with RetellClient(sim.base_url, API_KEY, timeout_s=10.0) as client:
            gate = anyio.Semaphore(32)
            ids: dict[str, str] = {}

            async def place(i: int) -> None:
                async with gate:
                    call = await dial(client, f"att-{i}", to=f"+5699{i:07d}",
                                      metadata={"attempt_id": f"att-{i}", "batch_id": f"b{i % 2}"})
                    ids[f"att-{i}"] = call["call_id"]

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(place, i)
            assert len(set(ids.values())) == n and len(sim.dials) == n
            with pytest.raises(RateLimited):
                await dial(client, "att-over")
            assert (await dial(client, "att-17"))["call_id"] == ids["att-17"]  # a repeat is not a new call
            assert (await client.get_concurrency())["current_concurrency"] == n

            async def find(key: str) -> None:
                async with gate:
                    found = await client.find_calls_by_metadata("attempt_id", key)
                    assert [c["call_id"] for c in found] == [ids[key]]

            async with anyio.create_task_group() as tg:
                for key in ids:
                    tg.start_soon(find, key)
            odd = await client.find_calls_by_metadata("batch_id", "b1")
            assert len(odd) == len({c["call_id"] for c in odd}) == n // 2

            await client.stop_call(ids["att-0"])
            assert (await client.get_concurrency())["current_concurrency"] == n - 1
            extra = await dial(client, "att-extra")  # exactly one place was freed
            with pytest.raises(RateLimited):
                await dial(client, "att-extra2")
            clock.advance(2 * 3600)  # every long call reaches its maximum duration
            assert (await client.get_concurrency())["current_concurrency"] == 0
            assert (await client.get_call(extra["call_id"]))["disconnection_reason"] == "max_duration_reached"
            stats = sim.stats()
    assert stats["dials"] == n + 1 and stats["peak_live_calls"] == n
    assert stats["responses"]["create-phone-call"] == {"201": n + 2, "429": 2}


async def test_fixed_durations_stats_and_call_timeline(clock: SimClock, receiver: Any) -> None:
    async with hooked(clock, receiver.url, ring_s=1.0, talk_s={"success": 2.0, "long_call": 50.0}) as (sim, client):
        sim.script(TO, "success")
        sim.script("+56900000009", "long_call")
        short = await dial(client, "att-short")
        long = await dial(client, "att-long", to="+56900000009")
        clock.advance(1.5)
        assert (await client.get_call(short["call_id"]))["call_status"] == "ongoing"
        clock.advance(1.5)
        ended = await client.get_call(short["call_id"])
        assert ended["call_status"] == "ended" and ended["duration_ms"] == 2000
        assert (await client.get_call(long["call_id"]))["call_status"] == "ongoing"
        clock.advance(60)
        over = await client.get_call(long["call_id"])
        assert (over["disconnection_reason"], over["duration_ms"]) == ("user_hangup", 50_000)
        await receiver.wait_for(6)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{sim.base_url}/_sim/stats") as resp:
                stats = await resp.json()
            async with http.get(f"{sim.base_url}/_sim/calls") as resp:
                timeline = await resp.json()
    assert stats["requests"] == {"create-phone-call": 2, "get-call": 4}
    assert stats["webhooks"] == {"posted": 6} and stats["live_calls"] == 0 and stats["peak_live_calls"] == 2
    first = timeline[0]
    assert first["call_id"] == short["call_id"] and first["status"] == "ended"
    assert (first["answer_ms"] - first["created_ms"], first["end_ms"] - first["answer_ms"]) == (1000, 2000)
    assert timeline[1]["end_ms"] - timeline[1]["answer_ms"] == 50_000


def test_talk_seconds_parsing() -> None:
    from speechai.retell.sim_outcomes import parse_talk_seconds

    assert parse_talk_seconds("success=2, long_call=86400") == {"success": 2.0, "long_call": 86400.0}
    with pytest.raises(ValueError, match="busy"):
        parse_talk_seconds("busy=3")  # never connects: no talk time
    with pytest.raises(ValueError, match="-1"):
        parse_talk_seconds("success=-1")
