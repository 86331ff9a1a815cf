"""The campaign's contact caps count human agents' calls: through the dial-time gate, against the embedded DB,
with the calls made over the agents' HTTP routes."""

from __future__ import annotations

from datetime import timedelta

from speechai.domain.settings import CallSettings
from speechai.runtime.gate import gate_person, person_view
from speechai.store.models import Job, Phone
from tests.agents.conftest import MONDAY, AgentsApi

PHONE = "+56987654321"
DAILY_ONE = CallSettings(person_policy={"max_calls_per_day": 1, "max_no_answer_days": None})


async def _job(account: str = "acme") -> Job:
    job = Job(account_id=account, batch_id="b1", dedup_key=f"{account}:b1:1", person_key=PHONE,
              phones=[Phone(number=PHONE)], next_try_at=MONDAY, created_at=MONDAY, updated_at=MONDAY)
    await job.insert()
    return job


async def test_a_person_called_by_an_agent_today_is_not_dialed_again(agents_api: AgentsApi) -> None:
    api = agents_api
    job = await _job()
    assert (await gate_person(job, DAILY_ONE, api.clock.now())).allowed
    call = await api.start("ana", "9 8765 4321")
    view = await person_view(job)
    assert view.busy  # on a call with an agent right now: the runtime waits
    api.clock.advance(90)
    await api.end("ana", call["id"], "no_answer")
    now = api.clock.now()
    verdict = await gate_person(job, DAILY_ONE, now)
    assert not verdict.allowed and not verdict.exclude
    assert verdict.reason == "1 calls today (limit 1 a day)"
    assert verdict.retry_at == (MONDAY + timedelta(days=1)).replace(hour=0)  # the next local midnight
    assert not (await person_view(job)).busy
    # the next local day the cap allows a call again
    assert (await gate_person(job, DAILY_ONE, MONDAY + timedelta(days=1))).allowed


async def test_a_call_an_agent_never_ended_stops_keeping_the_person_busy(agents_api: AgentsApi) -> None:
    api = agents_api
    job = await _job()
    await api.start("ana", PHONE)  # never ended
    started = api.clock.now()
    assert (await person_view(job, started + timedelta(hours=3, minutes=59))).busy
    later = started + timedelta(hours=4)
    assert not (await person_view(job, later)).busy
    # it still counts as the day's attempt
    verdict = await gate_person(job, DAILY_ONE, later)
    assert not verdict.allowed and verdict.reason == "1 calls today (limit 1 a day)"


async def test_another_accounts_agent_calls_do_not_count(agents_api: AgentsApi) -> None:
    api = agents_api
    job = await _job()
    call = await api.start("bea", PHONE)
    await api.end("bea", call["id"], "completed")
    assert (await gate_person(job, DAILY_ONE, api.clock.now())).allowed


async def test_a_resolved_call_stops_the_campaign_and_a_conversation_starts_the_quiet_period(
        agents_api: AgentsApi) -> None:
    api = agents_api
    job = await _job()
    quiet = CallSettings(person_policy={"max_calls_per_day": None, "quiet_days_after_conversation": 7})
    talk = await api.start("ana", PHONE)
    await api.end("ana", talk["id"], "completed")
    verdict = await gate_person(job, quiet, api.clock.now() + timedelta(days=2))
    assert not verdict.allowed and "conversation less than 7 days ago" in (verdict.reason or "")
    settled = await api.start("beto", PHONE)
    await api.end("beto", settled["id"], "completed", outcome="paid", resolved=True)
    verdict = await gate_person(job, DAILY_ONE, api.clock.now() + timedelta(days=30))
    assert verdict.exclude and verdict.reason == "already reached with success: never called again"
