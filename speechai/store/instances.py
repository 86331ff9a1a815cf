"""Instance generations: each start of an instance id gets a higher number than every earlier one."""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument

from speechai.store.models import InstanceRecord


async def next_generation(instance_id: str) -> int:
    for _ in range(3):  # the embedded server answers a lost upsert race with None, not DuplicateKeyError
        doc = await InstanceRecord.get_pymongo_collection().find_one_and_update(
            {"_id": instance_id}, {"$inc": {"generation": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
        if doc is not None:
            return int(doc["generation"])
    raise RuntimeError(f"could not take a generation for instance {instance_id!r}")


async def record_beat(instance_id: str, generation: int, *, now_ms: int, lease_ttl_ms: int, in_flight: int,
                      last_pass_ms: int | None, pid: int, host: str, started_ms: int) -> bool:
    """The heartbeat's liveness record, written only by the instance's current generation (an older
    process of the same id, fenced off, leaves it alone). Integers only: no datetime in a ``$set``."""
    fields: dict[str, Any] = {"heartbeat_ms": now_ms, "lease_ttl_ms": lease_ttl_ms, "in_flight": in_flight,
                              "last_pass_ms": last_pass_ms, "pid": pid, "host": host, "started_ms": started_ms,
                              "stopped_ms": None}
    result = await InstanceRecord.get_pymongo_collection().update_one(
        {"_id": instance_id, "generation": generation},
        {"$set": fields})
    return result.matched_count == 1


async def record_stop(instance_id: str, generation: int, *, now_ms: int, last_pass_ms: int | None) -> None:
    """A clean stop: ``speechai status`` then shows the instance as stopped rather than stale, with the
    scheduler's last pass (a short run may stop before a second beat)."""
    await InstanceRecord.get_pymongo_collection().update_one(
        {"_id": instance_id, "generation": generation},
        {"$set": {"stopped_ms": now_ms, "in_flight": 0, "last_pass_ms": last_pass_ms}})
