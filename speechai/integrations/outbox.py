"""The outbox relay: events written with their cause (inside a job's checkpoint, a batch's or an
account's update) are copied to the ``outbox`` collection and fanned out as one delivery per matching
subscription.

Relaying is idempotent (ids derive from the cause; duplicate inserts are ignored), so it may run more than
once: right after the write that recorded the events, again by an actor that takes the document over, and
by :meth:`Outbox.sweep`, which looks at everything written since its last pass (and, at start, since the
last pass any instance recorded) so an event whose process died right after its write is still relayed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import structlog
from pymongo.errors import BulkWriteError

from actors.batcher import Batcher
from speechai.domain.events import OutboxItem, batch_event
from speechai.store.models import BULK_MAX, Account, Batch, BatchStatus, Job, wall_ms
from speechai.store.outbox_models import Delivery, OutboxEvent, Subscription

log = structlog.get_logger("speechai.outbox")
DUPLICATE_KEY = 11000
SWEEP_MARGIN_MS = 120_000  # writes stamped this long before a sweep started may land after it
SWEEP_STATE_ID = "outbox_sweep"
RECENT_MAX = 200_000


async def _insert_ignoring_duplicates(coll: Any, docs: list[dict[str, Any]]) -> None:
    if not docs:
        return
    try:
        await coll.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        other = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if other:
            raise


def _inserter(model: Any) -> Callable[[list[list[dict[str, Any]]]], Any]:
    """The flush of a group commit: every caller's documents of one moment in one insert."""
    async def flush(groups: list[list[dict[str, Any]]]) -> list[None]:
        await _insert_ignoring_duplicates(model.get_pymongo_collection(), [d for g in groups for d in g])
        return [None] * len(groups)
    return flush


_events: Batcher[list[dict[str, Any]], None] = Batcher(_inserter(OutboxEvent), max_items=BULK_MAX)
_deliveries: Batcher[list[dict[str, Any]], None] = Batcher(_inserter(Delivery), max_items=BULK_MAX)


def delivery_id(event_id: str, subscription_id: str) -> str:
    return f"{event_id}>{subscription_id}"


def wants(sub: Subscription, event_type: str) -> bool:
    return sub.active and (event_type in sub.events or "*" in sub.events)


class Outbox:
    """``now_ms``: business epoch ms (delivery schedules follow the campaign's clock)."""

    def __init__(self, now_ms: Callable[[], int], *, subs_ttl_s: float = 5.0,
                 on_new: Callable[[], None] | None = None) -> None:
        self.now_ms = now_ms
        self.subs_ttl_s = subs_ttl_s
        self.on_new = on_new  # wakes the delivery actor
        self._recent: OrderedDict[str, None] = OrderedDict()  # event ids this process relayed
        self._subs: dict[str, tuple[float, list[Subscription]]] = {}
        self._reading: dict[str, anyio.Lock] = {}
        self._swept_ms = 0
        self.relayed = 0

    def is_relayed(self, items: Sequence[OutboxItem]) -> bool:
        return all(i.id in self._recent for i in items)

    def forget_subscriptions(self, account_id: str | None = None) -> None:
        if account_id is None:
            self._subs.clear()
        else:
            self._subs.pop(account_id, None)

    async def subscriptions(self, account_id: str) -> list[Subscription]:
        """The account's subscriptions, re-read at most every ``subs_ttl_s`` (changes made through this
        instance apply at once); the relays of one moment share one read."""
        hit = self._subs.get(account_id)
        if hit is not None and time.monotonic() - hit[0] < self.subs_ttl_s:
            return hit[1]
        async with self._reading.setdefault(account_id, anyio.Lock()):
            hit = self._subs.get(account_id)
            if hit is not None and time.monotonic() - hit[0] < self.subs_ttl_s:
                return hit[1]
            subs = await Subscription.find({"account_id": account_id}).to_list()
            self._subs[account_id] = (time.monotonic(), subs)
            return subs

    async def relay(self, items: Sequence[OutboxItem]) -> None:
        """Copy ``items`` to the outbox and create their deliveries (idempotent)."""
        new = [i for i in items if i.id not in self._recent]
        if not new:
            return
        now = self.now_ms()
        deliveries: list[dict[str, Any]] = []
        wanted: list[OutboxItem] = []  # events some subscription wants: the others cost no write
        for item in new:
            subs = [sub for sub in await self.subscriptions(item.account_id) if wants(sub, item.type)]
            if subs:
                wanted.append(item)
            for sub in subs:
                deliveries.append({"_id": delivery_id(item.id, sub.id), "event_id": item.id,
                                   "subscription_id": sub.id, "account_id": item.account_id, "type": item.type,
                                   "state": "pending", "next_ms": now, "first_try_ms": 0, "tries": 0,
                                   "attempts": [], "delivered_ms": 0, "claim": "", "claim_until_ms": 0,
                                   "claim_owner": "", "created_ms": now})
        # Deliveries first: an event in the outbox collection then always has its deliveries (a crash in
        # between leaves the source document's copy, relayed again).
        if deliveries:
            await _deliveries.submit(deliveries)
            await _events.submit([{"_id": i.id, "account_id": i.account_id, "type": i.type, "at_ms": i.at_ms,
                                   "data": i.data, "relayed_ms": now} for i in wanted])
        for item in new:
            self._recent[item.id] = None
            if len(self._recent) > RECENT_MAX:
                self._recent.popitem(last=False)
        self.relayed += len(new)
        if deliveries and self.on_new is not None:
            self.on_new()

    # --- the sweep ------------------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Relay what documents written since the last pass still hold unrelayed; returns how many."""
        state = OutboxEvent.get_pymongo_collection().database["integration_state"]
        start = wall_ms()
        if not self._swept_ms:
            mark = await state.find_one({"_id": SWEEP_STATE_ID})
            self._swept_ms = int(mark["ms"]) if mark else 0
        since = self._swept_ms - SWEEP_MARGIN_MS
        found: list[OutboxItem] = []
        # jobs: an integer range on the indexed sync_ms (DESIGN.md §6); batches and accounts are few
        async for raw in Job.get_pymongo_collection().find({"sync_ms": {"$gt": since}}, {"outbox": 1}):
            found += [OutboxItem.model_validate(i) for i in raw.get("outbox") or []]
        for model in (Batch, Account):
            async for raw in model.get_pymongo_collection().find({}, {"outbox": 1}):
                found += [OutboxItem.model_validate(i) for i in raw.get("outbox") or []]
        pending = [i for i in found if i.id not in self._recent]
        if pending:
            known = {d["_id"] async for d in OutboxEvent.get_pymongo_collection().find(
                {"_id": {"$in": [i.id for i in pending]}}, {"_id": 1})}
            unrelayed = [i for i in pending if i.id not in known]
            for i in pending:
                if i.id in known:
                    self._recent[i.id] = None
            if unrelayed:
                log.warning("outbox_relayed_late", events=len(unrelayed))
                await self.relay(unrelayed)
            pending = unrelayed
        self._swept_ms = start
        await state.update_one({"_id": SWEEP_STATE_ID}, {"$max": {"ms": start}}, upsert=True)
        return len(pending)


async def pause_batch(outbox: Outbox, batch_id: str, account_id: str, reason: str, at_ms: int) -> bool:
    """Pause an active batch and record ``batch.paused`` in the same update; True if this call paused it."""
    event = batch_event("batch.paused", at_ms, account_id=account_id, batch_id=batch_id, reason=reason,
                        seq=str(at_ms))
    result = await Batch.get_pymongo_collection().update_one(
        {"_id": batch_id, "status": BatchStatus.ACTIVE.value},
        {"$set": {"status": BatchStatus.PAUSED.value, "status_reason": reason, "outbox": [event.model_dump()]}})
    if result.modified_count:
        await outbox.relay([event])
    return bool(result.modified_count)
