"""Human agents' calls over real HTTP: durations from the server's clock, role views, another account's
things absent, the call log's filters and pages, the per-person history, and the dashboard's live feed."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import aiohttp
from bson import ObjectId

from speechai.agents.service import SEQ_MAX
from speechai.store.agent_models import HumanCall
from speechai.store.models import Attempt, Job, Phone, epoch_ms
from tests.agents.conftest import MONDAY, AgentsApi
from tests.api.conftest import ADMIN_TOKEN

PHONE = "+56987654321"


async def test_duration_is_the_servers_clock_not_the_clients(agents_api: AgentsApi) -> None:
    api = agents_api
    call = await api.start("ana", "9 8765 4321")
    assert call["status"] == "in_progress" and call["phone"] == PHONE and call["person_key"] == PHONE
    api.clock.advance(245.5)
    status, body = await api.call("ana", "POST", f"/agent-calls/{call['id']}/end",
                                  json={"status": "completed", "duration_ms": 1})
    assert status == 422 and body["detail"].startswith("duration_ms: computed by the server"), body
    ended = await api.end("ana", call["id"], outcome="promise_to_pay", notes="pays friday")
    assert ended["duration_ms"] == 245_500 and ended["status"] == "completed"
    stored = await HumanCall.get(call["id"])
    assert stored is not None and stored.ended_ms - stored.started_ms == 245_500 and stored.notes == "pays friday"
    # an end's start time cannot be moved either, and a call ends once
    status, body = await api.call("ana", "POST", "/agent-calls", json={"phone": PHONE, "started_at": "2020-01-01"})
    assert status == 422 and "started_at" in body["detail"]
    status, body = await api.call("ana", "POST", f"/agent-calls/{call['id']}/end", json={"status": "failed"})
    assert status == 409 and "already ended" in body["detail"]


async def test_bad_input_is_refused_naming_the_field(agents_api: AgentsApi) -> None:
    api = agents_api
    for body, field in (({"phone": "12"}, "phone"), ({"phone": PHONE, "national_id": "12345678-0"}, "national_id"),
                        ({"phone": PHONE, "colour": "red"}, "colour")):
        status, got = await api.call("ana", "POST", "/agent-calls", json=body)
        assert status == 422 and field in got["detail"], (body, got)
    for query, name in (("limit=1001", "limit"), ("limit=0", "limit"), ("cursor=x", "cursor"),
                        ("status=happy", "status"), ("from=yesterday", "from"), ("tz=Mars/Base", "tz"),
                        ("colour=red", "colour"), ("from=2026-03-10&to=2026-03-09", "from")):
        status, got = await api.call("adela", "GET", f"/agent-calls?{query}")
        assert status == 422 and name in got["detail"], (query, got)
    call = await api.start("ana", PHONE)
    status, got = await api.call("ana", "POST", f"/agent-calls/{call['id']}/end", json={"status": "in_progress"})
    assert status == 422 and "status" in got["detail"]
    # text the database cannot hold is refused, not a server error
    status, got = await api.call("ana", "POST", f"/agent-calls/{call['id']}/end",
                                 data=b'{"status": "failed", "notes": "\\ud800"}',
                                 headers={"Content-Type": "application/json"})
    assert status == 422 and got["detail"].startswith("body:"), got
    for path in ("/agent-calls?user_id=%ff", "/people/%ed%a0%80/calls", "/agents?account_id=%ff"):
        status, got = await api.call("adela", "GET", path)
        assert status in (200, 404, 422), (path, status, got)


async def test_role_views(agents_api: AgentsApi) -> None:
    api = agents_api
    calls = {who: await api.start(who, PHONE) for who in ("ana", "beto", "sara", "dino", "adela", "bea")}
    for who, call in calls.items():
        api.clock.advance(60)
        await api.end(who, call["id"])

    async def users_seen(who: str, path: str = "/agent-calls") -> set[str]:
        status, body = await api.call(who, "GET", path)
        assert status == 200, body
        return {c["user_id"] for c in body["calls"]}

    ids = api.ids
    assert await users_seen("ana") == {ids["ana"]}
    assert await users_seen("sara") == {ids["ana"], ids["beto"], ids["sara"]}
    acme = {ids[w] for w in ("ana", "beto", "sara", "dino", "adela")}
    assert await users_seen("adela") == acme
    assert await users_seen("acme:viewer") == acme  # a key not bound to an agent: the account's view
    assert await users_seen("admin", "/agent-calls?account_id=acme") == acme
    assert await users_seen("bea") == {ids["bea"]}
    # outside one's view: absent
    assert (await api.call("ana", "GET", f"/agent-calls?user_id={ids['beto']}"))[0] == 404
    assert (await api.call("sara", "GET", f"/agent-calls?user_id={ids['dino']}"))[0] == 404
    assert await users_seen("sara", f"/agent-calls?user_id={ids['beto']}") == {ids["beto"]}
    for who in ("bea", "beta:operator", "beta:viewer"):
        assert (await api.call(who, "GET", "/agent-calls?account_id=acme"))[0] == 404
        assert (await api.call(who, "GET", f"/agent-calls?user_id={ids['ana']}"))[0] == 404
        assert (await api.call(who, "GET", "/agents/metrics?account_id=acme"))[0] == 404
        assert (await api.call(who, "GET", f"/people/{PHONE}/calls?account_id=acme"))[0] == 404
    # ending someone else's call: the agent does not see it
    fresh = await api.start("beto", PHONE)
    assert (await api.call("ana", "POST", f"/agent-calls/{fresh['id']}/end", json={"status": "failed"}))[0] == 404
    assert (await api.call("bea", "POST", f"/agent-calls/{fresh['id']}/end", json={"status": "failed"}))[0] == 404
    # metrics follow the same views
    status, body = await api.call("sara", "GET", "/agents/metrics")
    assert status == 200 and body["view"] == "supervisor"
    assert {u["user_id"] for u in body["users"]} == {ids["ana"], ids["beto"], ids["sara"]}
    status, body = await api.call("ana", "GET", "/agents/metrics")
    assert [u["user_id"] for u in body["users"]] == [ids["ana"]]
    status, body = await api.call("adela", "GET", "/agents/metrics")
    assert {u["user_id"] for u in body["users"]} == acme and body["totals"]["calls"] == 5
    # only keys bound to an agent user start calls
    status, body = await api.call("acme:operator", "POST", "/agent-calls", json={"phone": PHONE})
    assert status == 403 and "agent user" in body["detail"]
    assert (await api.call("acme:viewer", "POST", "/agents", json={"name": "x", "team": "t"}))[0] == 403
    assert (await api.call("ana", "POST", "/agents", json={"name": "x", "team": "t"}))[0] == 403
    # an agent's key opens the agents' routes only: not the account's batches, jobs or reports
    for path in ("/batches", "/jobs", "/accounts/acme", "/audit"):
        assert (await api.call("ana", "GET", path))[0] == 403, path
    # naming a batch it may not see (here: none such) tells it nothing: 404, as for another account's
    assert (await api.call("ana", "GET", "/jobs?batch_id=b1"))[0] == 404


async def test_metrics_are_exact(agents_api: AgentsApi) -> None:
    api = agents_api
    durations = {"completed": [1_001, 2_000, 2_000], "no_answer": [5_000], "dropped": [700]}
    for status, spans in durations.items():
        for ms in spans:
            call = await api.start("dino", PHONE)
            api.clock.advance(ms / 1000)
            await api.end("dino", call["id"], status)
    await api.start("dino", PHONE)  # still in progress
    status, body = await api.call("dino", "GET", "/agents/metrics")
    assert status == 200, body
    [me] = body["users"]
    assert (me["calls"], me["in_progress"], me["successes"], me["failures"]) == (5, 1, 3, 2)
    assert me["total_talk_ms"] == 5_001 and me["aht_ms"] == 1_667  # 5001 / 3 = 1667.0 (rounded half-up)
    assert me["success_rate"] == 0.6
    # a date range outside the calls: none
    status, body = await api.call("dino", "GET", "/agents/metrics?from=2026-03-10&tz=America/Santiago")
    assert body["users"][0]["calls"] == 0 and body["users"][0]["aht_ms"] is None


async def test_call_log_pages_of_at_most_1000_with_a_cursor(agents_api: AgentsApi) -> None:
    api = agents_api
    start = epoch_ms(MONDAY)
    docs = [HumanCall(id=f"hc_{i:05d}", seq=i, account_id="acme", user_id=api.ids["ana"], team="north",
                      person_key=PHONE, phone=PHONE, status="completed" if i % 2 else "no_answer",
                      started_at=MONDAY + timedelta(seconds=i), started_ms=start + i * 1000,
                      ended_at=MONDAY + timedelta(seconds=i + 1), ended_ms=start + i * 1000 + 1000, duration_ms=1000)
            for i in range(1, 1202)]
    await HumanCall.insert_many(docs)
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        status, body = await api.call("ana", "GET", f"/agent-calls?limit=1000{cursor}")
        assert status == 200 and len(body["calls"]) <= 1000
        seen += [int(c["id"][3:]) for c in body["calls"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert pages == 2 and seen == list(range(1201, 0, -1))  # newest first, each call once
    status, body = await api.call("sara", "GET", "/agent-calls?status=no_answer&limit=1000")
    assert len(body["calls"]) == 600 and {c["status"] for c in body["calls"]} == {"no_answer"}
    status, body = await api.call("ana", "GET", "/agent-calls?from=2026-03-09T10:00:10-03:00"
                                               "&to=2026-03-09T10:00:19-03:00")
    assert [int(c["id"][3:]) for c in body["calls"]] == list(range(19, 9, -1))


async def test_person_history_merges_ai_attempts_and_human_calls(agents_api: AgentsApi) -> None:
    api = agents_api
    ai_at = MONDAY - timedelta(hours=2)
    job = Job(account_id="acme", batch_id="b1", dedup_key="acme:b1:1", person_key="12345678-5",
              national_id="12345678-5", phones=[Phone(number=PHONE)], next_try_at=MONDAY, created_at=ai_at,
              updated_at=ai_at, attempts=[
                  Attempt(attempt_id="at1", phone=PHONE, created_at=ai_at, placed=True, placed_at=ai_at,
                          counted=True, call_id="rc1", outcome="no_answer"),
                  Attempt(attempt_id="at0", phone=PHONE, created_at=ai_at, placed=False)])
    await job.insert()
    by_rut = await api.start("ana", PHONE, national_id="12.345.678-5")
    api.clock.advance(30)
    by_job = await api.start("beto", "+56 9 9197 5219", job_id=str(job.id))
    assert by_rut["person_key"] == by_job["person_key"] == "12345678-5"
    await api.start("bea", PHONE, national_id="12345678-5")  # another account's call of the same RUT
    status, body = await api.call("ana", "GET", "/people/12.345.678-5/calls")
    assert status == 200, body
    assert [(c["kind"], c["call_id"]) for c in body["calls"]] == [
        ("human", by_job["id"]), ("human", by_rut["id"]), ("ai", "rc1")]
    assert (await api.call("ana", "GET", f"/agent-calls?user_id={api.ids['ana']}"))[0] == 200
    status, _ = await api.call("ana", "POST", "/agent-calls", json={"phone": PHONE, "job_id": str(ObjectId())})
    assert status == 404


async def test_dashboard_feed_shows_agent_calls_live(agents_api: AgentsApi) -> None:
    api = agents_api
    seen: list[dict] = []

    async def read_feed() -> None:
        async with aiohttp.ClientSession() as http, http.get(
                api.base + "/events", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
            kind = ""
            async for raw in r.content:
                line = raw.decode().strip()
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "log":
                    item = json.loads(line[6:])
                    if item.get("event", "").startswith("agent_call_"):
                        seen.append(item)
                        if item["event"] == "agent_call_ended":
                            return

    reader = asyncio.create_task(read_feed())
    await asyncio.sleep(0.5)  # the stream subscribes before the calls happen
    call = await api.start("ana", PHONE)
    api.clock.advance(12)
    await api.end("ana", call["id"], "dropped")
    await asyncio.wait_for(reader, 20)
    assert [(e["event"], e["agent_call_id"]) for e in seen] == [("agent_call_started", call["id"]),
                                                                ("agent_call_ended", call["id"])]
    assert seen[1]["duration_ms"] == 12_000 and seen[1]["status"] == "dropped"
    assert PHONE not in json.dumps(seen)


async def test_call_log_and_history_queries_use_an_index(agents_api: AgentsApi) -> None:
    coll = HumanCall.get_pymongo_collection()
    await coll.insert_many([{"_id": f"x{i}", "seq": 10_000 + i, "account_id": "acme", "user_id": f"u{i % 5}",
                             "team": "t", "person_key": f"p{i}", "status": "completed", "started_ms": i}
                            for i in range(50)])
    top = {"seq": {"$lt": SEQ_MAX}}  # what list_calls and metrics send on a first page
    shapes = [{"account_id": "acme", **top}, {"account_id": "acme", "seq": {"$lt": 9}},
              {"account_id": "acme", "user_id": "u1", "seq": {"$lt": 9}, "status": "completed"},
              {"account_id": "acme", "team": "t", "started_ms": {"$gte": 1, "$lt": 5}, **top},
              {"account_id": "acme", "user_id": "u1", "started_ms": {"$gte": 1}, **top},
              {"person_key": "p1", "account_id": "acme"}]
    for query in shapes:
        plan = json.dumps((await coll.find(query).sort("seq", -1).explain()).get("queryPlanner", {}), default=str)
        assert "USING INDEX" in plan or "IXSCAN" in plan, (query, plan[-900:])
        assert "SCAN " + coll.name not in plan.replace("SCAN json_each", ""), (query, plan[:400])
