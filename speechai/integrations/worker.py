"""The integrations worker of one instance: the delivery actor, the outbox sweep, and the watch that
records ``batch.finished`` once every job of an active batch is final."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import structlog
from pymongo.errors import ConnectionFailure

from speechai.domain.events import batch_event
from speechai.integrations.delivery import Deliverer
from speechai.integrations.outbox import Outbox
from speechai.store.models import Batch, BatchStatus, Job, JobState

log = structlog.get_logger("speechai.integrations")
OPEN_STATES = (JobState.PENDING, JobState.RETRY, JobState.IN_FLIGHT, JobState.SUSPENDED)
FINAL = (JobState.DONE, JobState.FAILED, JobState.EXCLUDED, JobState.CANCELLED)


async def _exists(query: dict) -> bool:
    return await Job.get_pymongo_collection().find_one(query, {"_id": 1}) is not None


async def finish_batches(outbox: Outbox, now_ms: int) -> list[str]:
    """Active batches whose jobs are all final get ``finished_ms`` and ``batch.finished`` in one update.
    Each check is an equality on the indexed (batch_id, state) pair (DESIGN.md §6)."""
    finished = []
    async for raw in Batch.get_pymongo_collection().find({"status": BatchStatus.ACTIVE.value},
                                                         {"finished_ms": 1, "account_id": 1}):
        if raw.get("finished_ms"):
            continue
        bid = raw["_id"]
        if any([await _exists({"batch_id": bid, "state": s.value}) for s in OPEN_STATES]):
            continue
        if not any([await _exists({"batch_id": bid, "state": s.value}) for s in FINAL]):
            continue  # no jobs at all
        event = batch_event("batch.finished", now_ms, account_id=raw["account_id"], batch_id=bid,
                            reason="every job is final", seq="1")
        result = await Batch.get_pymongo_collection().update_one(
            {"_id": bid, "finished_ms": {"$in": [0, None]}},
            {"$set": {"finished_ms": now_ms, "outbox": [event.model_dump()]}})
        if result.modified_count:
            await outbox.relay([event])
            log.info("batch_finished", batch_id=bid)
            finished.append(bid)
    return finished


class IntegrationWorker:
    def __init__(self, outbox: Outbox, deliverer: Deliverer, now_ms: Callable[[], int], *,
                 watch_every_s: float = 5.0, sweep_every_s: float = 30.0,
                 on_batch_finished: Callable[[], None] | None = None) -> None:
        self.outbox = outbox
        self.deliverer = deliverer
        self.now_ms = now_ms
        self.watch_every_s = watch_every_s
        # Relays fail only when a process dies between a write and its relay (or the database is away): the
        # sweep, which rereads the last two minutes of job writes each time, need not run often.
        self.sweep_every_s = sweep_every_s
        self.on_batch_finished = on_batch_finished

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.deliverer.run)
            tg.start_soon(self._watch)

    async def _watch(self) -> None:
        next_sweep = 0.0  # at start at once: what an earlier process left
        while True:
            try:
                if time.monotonic() >= next_sweep:
                    await self.outbox.sweep()
                    next_sweep = time.monotonic() + self.sweep_every_s
                if await finish_batches(self.outbox, self.now_ms()) and self.on_batch_finished is not None:
                    self.on_batch_finished()
            except ConnectionFailure as exc:
                log.warning("outbox_sweep_waiting_for_database", error=str(exc))
            await anyio.sleep(self.watch_every_s)
