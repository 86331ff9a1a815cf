"""A batch's job counts per state add up to its jobs while they change state: a job that moves between
two of the per-state counts is not counted twice or left out."""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

from speechai.api import batch_counts
from speechai.store.models import Job, JobState, wall_ms
from speechai.store.server import runs_one_command_at_a_time
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
    counts = await batch_counts._count_pass("b1")
    assert wrapped.aggregates == 1
    assert counts == {**dict.fromkeys((s.value for s in JobState), 0), "pending": 2, "done": 1}


async def _yields_during_reads(db: Any) -> bool:
    return False


async def test_a_job_that_moves_during_a_count_is_counted_once(db, monkeypatch) -> None:
    """On a server that yields during reads (MongoDB) a count needs two passes that agree."""
    coll, job_id = await _seed()
    wrapped = _MovesAJobMidCount(coll, job_id, after=1)  # after the first pass
    monkeypatch.setattr(Job, "get_pymongo_collection", classmethod(lambda cls: wrapped))
    monkeypatch.setattr(batch_counts, "runs_one_command_at_a_time", _yields_during_reads)
    counts = await batch_counts._count_batch("b1")
    assert wrapped.moved and counts["pending"] == 2 and counts["done"] == 1
    assert sum(counts.values()) == 3 and wrapped.aggregates == 3  # the second pass disagreed: a third


async def _jobs(first: int, n: int, state: JobState) -> None:
    await Job.insert_many([job_doc("acme", "b", i, SUNDAY, state) for i in range(first, first + n)])


async def test_a_recount_under_way_does_not_hold_up_the_others(db, monkeypatch: pytest.MonkeyPatch) -> None:
    batch_counts.forget_counts()
    await _jobs(0, 2, JobState.PENDING)
    first = await batch_counts.batch_counts_cached("b")
    assert first[JobState.PENDING.value] == 2
    await _jobs(2, 3, JobState.DONE)
    release, counting = anyio.Event(), anyio.Event()
    real = batch_counts._count_pass

    async def slow_pass(batch_id: str) -> dict[str, int]:
        counting.set()
        await release.wait()
        return await real(batch_id)

    monkeypatch.setattr(batch_counts, "_count_pass", slow_pass)
    monkeypatch.setattr(batch_counts, "COUNTS_TTL_S", 0.0)  # the answer above has expired
    got: dict[str, dict[str, int]] = {}

    async def recount() -> None:
        got["recount"] = await batch_counts.batch_counts_cached("b")

    async with anyio.create_task_group() as tg:
        tg.start_soon(recount)
        await counting.wait()
        with anyio.fail_after(1):  # answered at once with the counts before the recount
            got["meanwhile"] = await batch_counts.batch_counts_cached("b")
        release.set()
    assert got["meanwhile"] == first
    assert got["recount"][JobState.DONE.value] == 3 and got["recount"][JobState.PENDING.value] == 2
    # after a change made through the API every caller waits for the fresh count
    batch_counts.forget_counts()
    monkeypatch.setattr(batch_counts, "_count_pass", real)
    assert (await batch_counts.batch_counts_cached("b"))[JobState.DONE.value] == 3


class _CountedPasses:
    """``_count_pass`` that counts how often it ran."""

    def __init__(self) -> None:
        self.n, self._real = 0, batch_counts._count_pass

    async def __call__(self, batch_id: str) -> dict[str, int]:
        self.n += 1
        return await self._real(batch_id)


async def test_counts_are_kept_while_no_job_is_written_and_counted_again_after_a_write(db, monkeypatch) -> None:
    batch_counts.forget_counts()
    await _jobs(0, 2, JobState.PENDING)
    counted = _CountedPasses()
    monkeypatch.setattr(batch_counts, "_count_pass", counted)
    monkeypatch.setattr(batch_counts, "COUNTS_TTL_S", 0.0)  # every call looks again
    monkeypatch.setattr(batch_counts, "WRITE_SKEW_MS", 0)
    await anyio.sleep(0.01)  # the jobs were written before the count begins
    assert (await batch_counts.batch_counts_cached("b"))["pending"] == 2
    first = counted.n
    for _ in range(3):
        assert (await batch_counts.batch_counts_cached("b"))["pending"] == 2
    assert counted.n == first  # nothing written since: one sync_ms read each, no count
    await Job.get_pymongo_collection().update_one(
        {"dedup_key": "acme:b:0"}, {"$set": {"state": JobState.DONE.value, "sync_ms": wall_ms()}})
    got = await batch_counts.batch_counts_cached("b")
    assert (got["pending"], got["done"]) == (1, 1) and counted.n > first
    # a write that stamped no sync_ms is counted once the counts reach their greatest age
    await Job.get_pymongo_collection().update_one({"dedup_key": "acme:b:1"}, {"$set": {"state": "done"}})
    assert (await batch_counts.batch_counts_cached("b"))["pending"] == 1
    monkeypatch.setattr(batch_counts, "COUNTS_MAX_AGE_S", 0.0)
    assert (await batch_counts.batch_counts_cached("b"))["pending"] == 0


@pytest.mark.skipif(bool(os.environ.get("SPEECHAI_TEST_MONGO_URI")), reason="a property of the embedded server")
async def test_on_the_embedded_server_one_pass_is_a_snapshot(db) -> None:
    """nx-27017 runs one command at a time: a single pass counts every job once even while jobs keep
    moving between states, so it is one aggregate a count."""
    assert await runs_one_command_at_a_time(db)
    n = 60
    await _jobs(0, n, JobState.PENDING)
    coll = Job.get_pymongo_collection()
    ids = [d["_id"] async for d in coll.find({"batch_id": "b"}, {"_id": 1})]
    states = [JobState.PENDING.value, JobState.IN_FLIGHT.value, JobState.DONE.value]
    seen: list[dict[str, int]] = []
    counted = _CountedPasses()

    async def mover(k: int) -> None:
        for step in range(40):
            await coll.update_many({"_id": {"$in": ids[k::4]}}, {"$set": {"state": states[(step + k) % 3]}})

    async with anyio.create_task_group() as tg:
        for k in range(4):
            tg.start_soon(mover, k)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(batch_counts, "_count_pass", counted)
            for _ in range(30):
                seen.append(await batch_counts._count_batch("b"))
    assert counted.n == 30
    assert [sum(c.values()) for c in seen] == [n] * 30
    assert len({tuple(sorted(c.items())) for c in seen}) > 1  # the jobs did move while they were counted
