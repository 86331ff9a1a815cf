"""A whole campaign through the real runtime, the simulator over HTTP and the embedded server, with a
subscription made over the control API and a CRM contact with an opportunity: every cause has its event,
every event its signed delivery, and the contact's opportunity gets the calls as numbered attempts."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

import aiohttp
import anyio

from speechai.domain.settings import CallSettings, HourRange, RetryDelays
from speechai.runtime.service import control_token
from speechai.store.models import Job, JobState
from speechai.store.outbox_models import Delivery, Opportunity, OutboxEvent
from tests.integrations.receiver import Receiver
from tests.runtime.harness import Person, make_config, run_campaign, script, seed_batch
from tests.runtime.test_campaign_e2e import MONDAY_0850, sim, sim_clock  # noqa: F401  (the same campaign clock)

SCL = ZoneInfo("America/Santiago")
SETTINGS = CallSettings(max_attempts=3, allowed_hours=[HourRange(start=time(9), end=time(19))],
                        days_of_week=[1, 2, 3, 4, 5], holidays_country=None,
                        retry_delay_min=RetryDelays(no_answer=30, voicemail=30, conversation=60, provider_error=10,
                                                    capacity=2))
PEOPLE = [
    Person(["+56961111111"], {"+56961111111": ["no_answer", "no_answer", "success"]}),
    Person(["+56962222222"], {"+56962222222": ["voicemail", "voicemail", "voicemail"]}),
    Person(["+56963333333"], {"+56963333333": ["success"]}),
]



async def test_events_deliveries_and_crm_attempts(db, mongo_uri, tmp_path, sim, sim_clock) -> None:  # noqa: F811
    script(sim, PEOPLE)
    jobs = await seed_batch("b1", PEOPLE, SETTINGS, MONDAY_0850)
    config = make_config(db, mongo_uri, tmp_path)
    config.integrations.allow_private_targets = True
    token = control_token(tmp_path)
    stop = anyio.Event()
    seen: dict = {}

    async with Receiver() as rx:
        async def drive(inst) -> None:
            base = f"http://127.0.0.1:{inst.api.port}"
            auth = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(headers=auth) as http:
                async with http.post(f"{base}/webhooks/subscriptions", json={
                        "account_id": "acme", "url": rx.url, "events": ["nonsense"]}) as r:
                    seen["unknown_event"] = (r.status, await r.text())
                async with http.post(f"{base}/webhooks/subscriptions", json={
                        "account_id": "acme", "url": rx.url, "events": ["*"]}) as r:
                    assert r.status == 201, await r.text()
                    sub = await r.json()
                rx.secret = sub["secret"]
                async with http.post(f"{base}/crm/contacts", json={"account_id": "acme", "phone": "+56961111111",
                                                                   "name": "Ana"}) as r:
                    assert r.status == 201, await r.text()
                    contact = await r.json()
                async with http.post(f"{base}/crm/opportunities", json={
                        "account_id": "acme", "contact_id": contact["id"], "title": "deuda"}) as r:
                    assert r.status == 201, await r.text()
                    seen["opportunity"] = (await r.json())["id"]
                seen["sub"] = sub
                seen["base"], seen["auth"] = base, auth
            # the campaign's jobs reach final states, then everything is delivered
            with anyio.fail_after(60):
                while True:
                    states = {j.state async for j in Job.find({"batch_id": "b1"})}
                    pending = await Delivery.find({"next_ms": {"$gt": 0}}).count()
                    finished = any(r.body["type"] == "batch.finished" for r in rx.got)
                    if states <= {JobState.DONE, JobState.FAILED} and not pending and finished:
                        break
                    await anyio.sleep(0.2)
            async with aiohttp.ClientSession(headers=auth) as http:
                async with http.get(f"{base}/webhooks/deliveries",
                                    params={"subscription_id": sub["id"], "limit": "2"}) as r:
                    seen["page"] = (r.status, await r.json())
                async with http.get(f"{base}/crm/opportunities", params={"contact_id": contact["id"]}) as r:
                    seen["opps"] = await r.json()
            stop.set()

        def on_ready(inst) -> None:
            _tg_start(inst)

        async def runner() -> None:
            await run_campaign(db, config, sim_clock, sim, stop=stop, on_ready=on_ready, timeout=90)

        async with anyio.create_task_group() as tg:
            def _tg_start(inst) -> None:
                tg.start_soon(drive, inst)
            await runner()

    assert seen["unknown_event"][0] == 422 and "nonsense" in seen["unknown_event"][1]
    final = {str(j.id): await Job.get(j.id) for j in jobs}
    calls = [(job, a) for job in final.values() for a in job.attempts if a.call_id]
    events = {e.id: e async for e in OutboxEvent.find({"account_id": "acme"})}
    # no cause without its event ...
    for _, a in calls:
        assert f"{a.attempt_id}:call.created" in events and f"{a.attempt_id}:call.finished" in events
    for job in final.values():
        assert any(e.type == f"job.{job.state.value}" and e.data["job_id"] == str(job.id) for e in events.values())
    # ... and no event without its cause
    attempt_ids = {a.attempt_id for _, a in calls}
    for e in events.values():
        if e.type.startswith("call."):
            assert e.data["attempt"]["attempt_id"] in attempt_ids
    promises = [e for e in events.values() if e.type == "promise_to_pay"]
    assert len(promises) == sum(1 for _, a in calls if a.success)  # the simulator's successes promise to pay
    assert [e.type for e in events.values()].count("batch.finished") == 1
    # every event reached the subscriber, signed; deduplicated by webhook-id, exactly the outbox
    delivered = {r.msg_id for r in rx.got if r.verified and r.status == 200}
    assert delivered == set(events)
    assert all(r.verified for r in rx.got)
    status, body = seen["page"]
    assert status == 200 and len(body["items"]) == 2 and body["next_cursor"]
    assert all(i["state"] == "delivered" and i["attempts"][0]["status"] == 200 for i in body["items"])
    # the CRM: Ana's three calls (two unanswered, then a conversation) are attempts 1, 2, 3
    [opp] = [o for o in seen["opps"]["items"]]
    stored = await Opportunity.get(seen["opportunity"])
    ana = final[str(jobs[0].id)]
    ana_calls = [a.call_id for a in ana.attempts if a.call_id]
    attempts = stored.first_call_attempts
    assert [attempts[k]["call_id"] for k in sorted(attempts)] == ana_calls
    assert [attempts[k]["status"] for k in sorted(attempts)] == ["orange", "orange", "green"]
    assert stored.first_call_completed and stored.first_call_successful_attempt == 3
    assert stored.status == "contacted" and opp["first_call_completed"] is True
