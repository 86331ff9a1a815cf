"""Concurrency slots shared by every instance on one database.

A scope (``global``, ``account:<id>``) has one document per slot, numbered 0..N-1. Taking a slot
is an atomic ``find_one_and_update`` on a free one (``until_ms`` in the past), so two instances can
never hold more than N between them. Slots are leased like jobs: renewed by the heartbeat and
freed on release; a slot whose holder died simply expires.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from speechai.store.models import Slot


async def ensure_slots(scope: str, count: int) -> None:
    ops = [UpdateOne({"_id": f"{scope}:{i}"},
                     {"$setOnInsert": {"scope": scope, "index": i, "holder": None, "owner": None, "until_ms": 0}},
                     upsert=True) for i in range(count)]
    if ops:
        try:
            await Slot.get_pymongo_collection().bulk_write(ops, ordered=False)
        except BulkWriteError:  # a concurrent instance inserted the same slots first
            pass


async def acquire(scope: str, limit: int, holder: str, owner: str, until_ms: int, now_ms: int) -> bool:
    raw = await Slot.get_pymongo_collection().find_one_and_update(
        {"scope": scope, "index": {"$lt": limit}, "until_ms": {"$lt": now_ms}},
        {"$set": {"holder": holder, "owner": owner, "until_ms": until_ms}},
    )
    return raw is not None


async def holds(scope: str, holder: str, now_ms: int) -> bool:
    """Whether ``holder`` holds a live slot of ``scope``."""
    return await Slot.get_pymongo_collection().count_documents(
        {"scope": scope, "holder": holder, "until_ms": {"$gte": now_ms}}, limit=1) > 0


async def rename_holder(old: str, new: str) -> None:
    await Slot.get_pymongo_collection().update_many({"holder": old}, {"$set": {"holder": new}})


async def release(holder: str, owner: str | None = None) -> None:
    """Free every slot ``holder`` holds (only those of ``owner`` when given)."""
    query: dict[str, object] = {"holder": holder} if owner is None else {"holder": holder, "owner": owner}
    await Slot.get_pymongo_collection().update_many(query, {"$set": {"holder": None, "owner": None, "until_ms": 0}})


async def renew(owner: str, holders: Sequence[str], until_ms: int) -> None:
    if holders:
        await Slot.get_pymongo_collection().update_many(
            {"holder": {"$in": list(holders)}, "owner": owner}, {"$set": {"until_ms": until_ms}})


async def held(scope: str, now_ms: int) -> int:
    return await Slot.get_pymongo_collection().count_documents({"scope": scope, "until_ms": {"$gte": now_ms}})
