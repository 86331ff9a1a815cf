"""Other instances on the same database that may be running: they share the due work."""

from __future__ import annotations

from speechai.store.models import InstanceRecord


async def peers_alive(instance_id: str, now_ms: int) -> int:
    """Instances other than ``instance_id`` not known to be gone: not stopped cleanly, and with a
    heartbeat within two of their lease TTLs. One that never beat yet (just started) counts."""
    alive = 0
    async for raw in InstanceRecord.get_pymongo_collection().find(
            {"_id": {"$ne": instance_id}}, {"heartbeat_ms": 1, "lease_ttl_ms": 1, "stopped_ms": 1}):
        if raw.get("stopped_ms") is not None:
            continue
        beat, ttl = raw.get("heartbeat_ms"), raw.get("lease_ttl_ms") or 30_000
        if not isinstance(beat, int) or now_ms - beat <= 2 * ttl:
            alive += 1
    return alive
