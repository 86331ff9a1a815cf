"""A batch's job counts per state add up to its jobs while they change state: a job that moves between
two of the per-state counts is not counted twice or left out."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from speechai.api import routes
from speechai.store.models import Job, JobState
from tests.api.conftest import job_doc
from tests.runtime.conftest import SUNDAY


class _MovesAJobMidCount:
    """The jobs collection, except that right after its ``after``-th aggregation one job moves from
    pending to done: between two passes of one count."""

    def __init__(self, coll: Any, job_id: Any, after: int) -> None:
        self._coll, self._job_id, self._left = coll, job_id, after
        self.moved = False
        self.aggregates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._coll, name)

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> Any:
        cursor = await self._coll.aggregate(pipeline)
        self.aggregates += 1
        self._left -= 1
        if self._left == 0:
            await self._coll.update_one({"_id": self._job_id}, {"$set": {"state": JobState.DONE.value}})
            self.moved = True
        return cursor


async def _seed() -> tuple[Any, Any]:
    coll = Job.get_pymongo_collection()
    template = job_doc("acme", "b1", 0, SUNDAY).model_dump(by_alias=True, exclude={"id", "revision_id"})
    await coll.insert_many([{**template, "dedup_key": f"acme:b1:{i}", "person_key": f"p{i}",
                             "state": JobState.PENDING.value} for i in range(3)])
    moving = await coll.find_one({"dedup_key": "acme:b1:0"})
    return coll, moving["_id"]


async def test_one_pass_is_one_aggregate_for_every_state(db, monkeypatch) -> None:
    coll, _ = await _seed()
    await coll.update_one({"dedup_key": "acme:b1:1"}, {"$set": {"state": JobState.DONE.value}})
    wrapped = _MovesAJobMidCount(coll, None, after=0)
    monkeypatch.setattr(Job, "get_pymongo_collection", classmethod(lambda cls: wrapped))
    counts = await routes._count_pass("b1")
    assert wrapped.aggregates == 1
    assert counts == {**dict.fromkeys((s.value for s in JobState), 0), "pending": 2, "done": 1}


async def test_a_job_that_moves_during_a_count_is_counted_once(db, monkeypatch) -> None:
    coll, job_id = await _seed()
    wrapped = _MovesAJobMidCount(coll, job_id, after=1)  # after the first pass
    monkeypatch.setattr(Job, "get_pymongo_collection", classmethod(lambda cls: wrapped))
    counts = await routes._count_batch("b1")
    assert wrapped.moved and counts["pending"] == 2 and counts["done"] == 1
    assert sum(counts.values()) == 3 and wrapped.aggregates == 3  # the second pass disagreed: a third


async def _jobs(first: int, n: int, state: JobState) -> None:
    await Job.insert_many([job_doc("acme", "b", i, SUNDAY, state) for i in range(first, first + n)])


async def test_a_recount_under_way_does_not_hold_up_the_others(db, monkeypatch: pytest.MonkeyPatch) -> None:
    routes.forget_counts()
    await _jobs(0, 2, JobState.PENDING)
    first = await routes.batch_counts_cached("b")
    assert first[JobState.PENDING.value] == 2
    await _jobs(2, 3, JobState.DONE)
    release, counting = anyio.Event(), anyio.Event()
    real = routes._count_pass

    async def slow_pass(batch_id: str) -> dict[str, int]:
        counting.set()
        await release.wait()
        return await real(batch_id)

    monkeypatch.setattr(routes, "_count_pass", slow_pass)
    monkeypatch.setattr(routes, "COUNTS_TTL_S", 0.0)  # the answer above has expired
    got: dict[str, dict[str, int]] = {}

    async def recount() -> None:
        got["recount"] = await routes.batch_counts_cached("b")

    async with anyio.create_task_group() as tg:
        tg.start_soon(recount)
        await counting.wait()
        with anyio.fail_after(1):  # answered at once with the counts before the recount
            got["meanwhile"] = await routes.batch_counts_cached("b")
        release.set()
    assert got["meanwhile"] == first
    assert got["recount"][JobState.DONE.value] == 3 and got["recount"][JobState.PENDING.value] == 2
    # after a change made through the API every caller waits for the fresh count
    routes.forget_counts()
    monkeypatch.setattr(routes, "_count_pass", real)
    assert (await routes.batch_counts_cached("b"))[JobState.DONE.value] == 3
