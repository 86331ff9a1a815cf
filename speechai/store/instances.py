"""Instance generations: each start of an instance id gets a higher number than every earlier one."""

from __future__ import annotations

from pymongo import ReturnDocument

from speechai.store.models import InstanceRecord


async def next_generation(instance_id: str) -> int:
    for _ in range(3):  # the embedded server answers a lost upsert race with None, not DuplicateKeyError
        doc = await InstanceRecord.get_pymongo_collection().find_one_and_update(
            {"_id": instance_id}, {"$inc": {"generation": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
        if doc is not None:
            return int(doc["generation"])
    raise RuntimeError(f"could not take a generation for instance {instance_id!r}")
