"""Every list pages with an opaque cursor and a bounded limit; 10,000 jobs are seen exactly once."""

from __future__ import annotations

import time

from speechai.store.models import Job, JobState
from tests.api.conftest import Api, job_doc
from tests.runtime.conftest import SUNDAY

N = 10_000


async def _all_pages(api: Api, who: str, path: str, limit: int) -> tuple[list[dict], int]:
    items, cursor, pages = [], None, 0
    sep = "&" if "?" in path else "?"
    while True:
        status, got = await api.call(who, "GET", f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, got
        assert len(got["items"]) <= limit
        items += got["items"]
        pages += 1
        cursor = got["next_cursor"]
        if cursor is None:
            return items, pages


async def test_ten_thousand_jobs_each_exactly_once(api: Api) -> None:
    states = [JobState.PENDING, JobState.FAILED, JobState.RETRY, JobState.DONE]
    template = job_doc("acme", "big", 0, SUNDAY).model_dump(by_alias=True, exclude={"id", "revision_id"})
    docs = [{**template, "dedup_key": f"acme:big:{i}", "person_key": f"p{i}", "state": states[i % 4].value}
            for i in range(N)]
    coll = Job.get_pymongo_collection()
    await coll.insert_many(docs)  # the longest part of this test: the embedded server keeps 8 indexes
    from speechai.store.models import Batch

    await Batch(id="big", account_id="acme", created_at=SUNDAY).insert()
    expected = {str(d["_id"]) for d in docs}  # insert_many gave each its id
    assert len(expected) == N
    items, pages = await _all_pages(api, "acme:viewer", "/jobs?batch_id=big", 1000)
    ids = [j["id"] for j in items]
    assert len(ids) == N and set(ids) == expected and pages == 10  # the lookahead row tells the last page
    assert ids == sorted(ids)
    failed, _ = await _all_pages(api, "acme:viewer", "/jobs?batch_id=big&state=failed", 700)
    assert len(failed) == N // 4 and {j["state"] for j in failed} == {"failed"}
    # another account's operator sees none of them, whichever filter it tries
    status, _ = await api.call("beta:operator", "GET", "/jobs?batch_id=big")
    assert status == 404
    status, _ = await api.call("beta:operator", "GET", "/jobs?account_id=acme")
    assert status == 404


async def test_pages_stay_exact_while_jobs_change(api: Api) -> None:
    docs = [job_doc("acme", "a1", 100 + i, SUNDAY, JobState.FAILED) for i in range(300)]
    await Job.insert_many(docs)
    seen, cursor = [], None
    while True:
        _status, got = await api.call("acme:viewer", "GET", "/jobs?batch_id=a1&limit=50" +
                                     (f"&cursor={cursor}" if cursor else ""))
        seen += [j["id"] for j in got["items"]]
        for job in got["items"][:5]:  # jobs change state (and sync_ms) while the list is being read
            if job["state"] == "failed":
                assert (await api.call("acme:operator", "POST", f"/jobs/{job['id']}/retry",
                                       json={"reason": "paging"}))[0] == 200
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 304


async def test_filters(api: Api) -> None:
    pending, _failed, done, _ = api.jobs["acme"]
    status, got = await api.call("acme:viewer", "GET", f"/jobs?phone={pending.phones[0].number}")
    assert [j["id"] for j in got["items"]] == [str(pending.id)]
    status, got = await api.call("acme:viewer", "GET", f"/jobs?phone={pending.phones[0].number[3:]}")  # national
    assert [j["id"] for j in got["items"]] == [str(pending.id)]
    status, got = await api.call("acme:viewer", "GET", "/jobs?rut=11.111.111-1")
    assert status == 200 and got["items"] == []
    status, got = await api.call("acme:viewer", "GET", "/jobs?rut=12.345.678-9")
    assert status == 422 and got["problems"][0]["field"] == "rut"
    now_ms = int(time.time() * 1000)
    status, got = await api.call("acme:viewer", "GET", f"/jobs?updated_from_ms={now_ms + 60_000}")
    assert got["items"] == []
    status, got = await api.call("acme:viewer", "GET", f"/jobs?updated_to_ms={now_ms + 60_000}&state=done")
    assert [j["id"] for j in got["items"]] == [str(done.id)]
    for query, field in (("limit=0", "limit"), ("limit=1001", "limit"), ("state=nope", "state"),
                         ("cursor=%%%", "cursor"), ("cursor=_w", "cursor"), ("page=2", "'page'"),
                         ("updated_from_ms=-1", "updated_from_ms"), ("batch_id=a1&batch_id=a1", "batch_id")):
        status, got = await api.call("acme:viewer", "GET", f"/jobs?{query}")
        assert status == 422 and field in got["detail"], (query, got)


async def test_attempts_keys_accounts_audit_and_batches_page(api: Api) -> None:
    job = api.jobs["acme"][0]
    raw = await Job.get_pymongo_collection().find_one({"_id": job.id})
    raw["attempts"] = [{"attempt_id": f"at{i}", "phone": "+56911112222", "created_at": SUNDAY} for i in range(7)]
    await Job.get_pymongo_collection().replace_one({"_id": job.id}, raw)
    items, pages = await _all_pages(api, "acme:viewer", f"/jobs/{job.id}/attempts", 3)
    assert [a["attempt_id"] for a in items] == [f"at{i}" for i in range(7)] and pages == 3
    keys, _ = await _all_pages(api, "admin", "/keys", 2)
    assert len(keys) == len({k["id"] for k in keys}) == 6
    accounts, _ = await _all_pages(api, "admin", "/accounts", 1)
    assert [a["id"] for a in accounts] == ["acme", "beta"]
    for i in range(5):
        await api.call("acme:operator", "POST", "/accounts/acme/do-not-call", json={"key": f"+5699000{i:04d}"})
    dnc, pages = await _all_pages(api, "acme:viewer", "/accounts/acme/do-not-call", 2)
    assert len(dnc) == 5 and pages == 3
    audit, _ = await _all_pages(api, "acme:viewer", "/audit", 2)
    assert [e["action"] for e in audit] == ["do_not_call.add"] * 5
    batches, _ = await _all_pages(api, "admin", "/batches", 1)
    assert [b["id"] for b in batches] == ["a1", "b1"]


async def test_list_queries_use_an_index(db) -> None:
    """The shapes the lists send (explain(), not timing; DESIGN.md section 6)."""
    import json

    from bson import ObjectId

    from speechai.store.api_models import ApiKey, AuditEntry

    shapes = [
        (AuditEntry, {"account_id": "acme", "seq": {"$gt": 5}}, "seq"),
        (AuditEntry, {"seq": {"$gt": 5}}, "seq"),
        # the account was checked on the batch; batch_id alone needs a single-field index (docs/api.md)
        (Job, {"batch_id": "b1", "state": "failed"}, "_id"),
        (Job, {"account_id": "acme", "person_key": "12345678-5"}, "_id"),
        (Job, {"account_id": "acme", "sync_ms": {"$gte": 5, "$lte": 9}}, "_id"),
        (ApiKey, {"_id": "key_0123456789abcdef"}, None),
    ]
    for model, query, sort in shapes:
        coll = model.get_pymongo_collection()
        await coll.insert_many([{"_id": ObjectId() if model is not ApiKey else f"k{i}", "account_id": "acme",
                                 "batch_id": f"b{i % 20}", "seq": i, "sync_ms": i, "person_key": f"p{i}"}
                                for i in range(300)])
        cursor = coll.find(query)
        if sort:
            cursor = cursor.sort(sort, 1)
        plan = json.dumps((await cursor.limit(10).explain()).get("queryPlanner", {}), default=str)
        assert "USING INDEX" in plan or "USING PRIMARY KEY" in plan, (query, plan[:400])
        await coll.delete_many({})
