"""`/metrics` after a small real campaign, parsed with prometheus-client's own parser."""

from __future__ import annotations

import aiohttp
import anyio
from prometheus_client.parser import text_string_to_metric_families

from actors.clock import SimClock
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import FINAL_STATES, Account, Job, Plan
from tests.reports.campaign import MONDAY_0850, PEOPLE, SETTINGS, TALK_S
from tests.runtime.harness import API_KEY, make_config, script, seed_batch
from tests.runtime.test_policy_e2e import TOKEN, drive


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def total(found: dict, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


async def until_final(limit_s: float = 30.0) -> None:
    for _ in range(int(limit_s / 0.2)):
        if all([job.state in FINAL_STATES async for job in Job.find({})]):
            return
        await anyio.sleep(0.2)
    raise AssertionError(f"jobs not final within {limit_s} s")


async def test_metrics_after_a_campaign(db, mongo_uri, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPEECHAI_CONTROL_TOKEN", TOKEN)
    clock = SimClock(MONDAY_0850, speed=600)
    await Account(id="acme", plan=Plan.CREDITS, balance_cents=100_000).insert()

    async def body(instance, http: aiohttp.ClientSession, base: str) -> None:
        await until_final()
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            await resp.text()
        await anyio.sleep(1.2)  # the event-loop probe started with the first scrape
        async with http.get(f"{base}/metrics") as resp:
            found = samples(await resp.text())
        async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{base}/metrics") as resp:
            assert resp.status == 401

        assert value(found, "speechai_calls_placed_total") == 12
        assert value(found, "speechai_calls_finished_total", outcome="conversation", success="true") == 3
        assert value(found, "speechai_calls_finished_total", outcome="conversation", success="false") == 4
        assert value(found, "speechai_calls_finished_total", outcome="voicemail", success="false") == 3
        assert value(found, "speechai_calls_finished_total", outcome="no_answer", success="false") == 1
        assert value(found, "speechai_calls_finished_total", outcome="bad_number", success="false") == 1
        assert value(found, "speechai_jobs_released_total", state="done") == 3
        assert value(found, "speechai_jobs_released_total", state="failed") == 2
        assert value(found, "speechai_jobs_released_total", state="excluded") == 1
        assert value(found, "speechai_jobs_released_total", state="retry_scheduled") == 6
        assert value(found, "speechai_webhooks_total", event="call_ended") == 12
        assert value(found, "speechai_dial_seconds_count", result="ok") == 12
        assert value(found, "speechai_calls_in_flight") == 0
        assert value(found, "speechai_slots_limit", scope="account:acme") == 20
        assert value(found, "speechai_slots_in_use", scope="account:acme") == 0
        assert value(found, "speechai_slots_limit", scope="global") == instance.rt.limits.concurrency
        balance = (await Account.get("acme")).balance_cents
        assert balance < 100_000 and value(found, "speechai_account_balance_cents", account="acme") == balance
        assert value(found, "speechai_account_suspended", account="acme") == 0
        assert value(found, "speechai_batch_jobs", batch="b1", state="done") == 3
        assert value(found, "speechai_batch_jobs", batch="b1", state="pending") == 0
        assert value(found, "speechai_scheduler_pass_seconds_count") > 0
        assert value(found, "speechai_event_loop_lag_seconds_count") >= 1
        assert total(found, "speechai_db_command_seconds_count", command="update") > 0
        assert total(found, "speechai_db_command_seconds_count") > 50
        assert value(found, "speechai_webhook_last_age_seconds") >= 0

    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=3, ring_s=5, talk_s=TALK_S) as sim:
        script(sim, PEOPLE)
        await seed_batch("b1", PEOPLE, SETTINGS, MONDAY_0850)
        await drive(db, make_config(db, mongo_uri, tmp_path), clock, sim, body, within=40)
