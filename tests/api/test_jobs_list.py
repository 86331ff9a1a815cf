"""``GET /jobs`` over real HTTP: attempt counts and the last outcome are shown, and the ``outcome``
filter is the last attempt's, paged exactly once per job."""

from __future__ import annotations

from datetime import timedelta

from speechai.api import routes
from speechai.store.models import Attempt, Job
from tests.api.conftest import Api
from tests.runtime.conftest import SUNDAY


def attempt(n: int, outcome: str | None) -> Attempt:
    return Attempt(attempt_id=f"a{n}", phone="+56911112222", created_at=SUNDAY + timedelta(minutes=n),
                   outcome=outcome, placed=True)


async def set_attempts(job: Job, outcomes: list[str | None]) -> None:
    await Job.get_pymongo_collection().update_one(
        {"_id": job.id}, {"$set": {"attempts": [attempt(i, o).model_dump(mode="python") for i, o in
                                                enumerate(outcomes)]}})


async def test_list_shows_attempt_count_and_last_outcome(api: Api) -> None:
    pending, failed, _done, _ = api.jobs["acme"]
    await set_attempts(failed, ["no_answer", "voicemail"])
    status, got = await api.call("acme:viewer", "GET", "/jobs?batch_id=a1")
    assert status == 200, got
    by_id = {j["id"]: j for j in got["items"]}
    assert (by_id[str(failed.id)]["attempts"], by_id[str(failed.id)]["outcome"]) == (2, "voicemail")
    assert (by_id[str(pending.id)]["attempts"], by_id[str(pending.id)]["outcome"]) == (0, None)


async def test_outcome_filter_is_the_last_attempts(api: Api) -> None:
    pending, failed, done, in_flight = api.jobs["acme"]
    await set_attempts(pending, ["voicemail", "no_answer"])  # voicemail earlier, not last
    await set_attempts(failed, ["no_answer", "voicemail"])
    await set_attempts(done, ["voicemail"])
    await set_attempts(in_flight, [None])
    status, got = await api.call("acme:viewer", "GET", "/jobs?outcome=voicemail")
    assert status == 200, got
    assert sorted(j["id"] for j in got["items"]) == sorted([str(failed.id), str(done.id)])
    assert all(j["outcome"] == "voicemail" for j in got["items"]) and got["next_cursor"] is None
    status, got = await api.call("acme:viewer", "GET", "/jobs?outcome=no_answer")
    assert [j["id"] for j in got["items"]] == [str(pending.id)]
    # another account's jobs never match
    status, got = await api.call("beta:viewer", "GET", "/jobs?outcome=voicemail")
    assert status == 200 and got["items"] == []


async def test_outcome_filter_pages_each_match_once_with_bounded_reads(api: Api, monkeypatch) -> None:
    from tests.api.conftest import job_doc

    jobs = [job_doc("acme", "a1", 100 + i, SUNDAY) for i in range(120)]
    await Job.insert_many(jobs)
    seeded = {j.id for j in api.jobs["acme"]}
    stored = [j for j in await Job.find({"batch_id": "a1"}).sort("+_id").to_list() if j.id not in seeded]
    assert len(stored) == 120
    expected = []
    for i, job in enumerate(stored):
        # every job has a "busy" attempt; a third end on it (the others end on something else)
        outcomes = ["busy"] if i % 3 == 0 else ["busy", "no_answer"]
        await set_attempts(job, outcomes)
        if i % 3 == 0:
            expected.append(str(job.id))
    monkeypatch.setattr(routes, "JOB_SCAN_MAX", 25)  # a page reads at most 25 candidates
    monkeypatch.setattr(routes, "JOB_SCAN_CHUNK", 10)
    seen: list[str] = []
    cursor, pages = None, 0
    while True:
        status, got = await api.call("acme:viewer", "GET", "/jobs?outcome=busy&limit=7"
                                     + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, got
        assert len(got["items"]) <= 7 and all(j["outcome"] == "busy" for j in got["items"])
        seen += [j["id"] for j in got["items"]]
        pages += 1
        cursor = got["next_cursor"]
        if cursor is None:
            break
        assert pages < 100
    assert seen == expected  # each once, in order
    assert pages >= 120 // 25  # the reads per page were bounded: short pages carried a cursor on
