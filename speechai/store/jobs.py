"""Job persistence: whole-document checkpoints fenced by an integer version, claims and leases.

A checkpoint is ``replace_one({_id, version: v}, doc with version v+1)``. Zero matches means another
owner changed the job (a takeover after our lease expired): the caller must stop touching it.
Claims use ``find_one_and_update`` with only integer/string ``$set`` values, because the embedded
server stores a ``$set`` datetime as a string (DESIGN.md section 6).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio
import structlog
from pymongo import ReturnDocument
from pymongo.errors import ConnectionFailure

from speechai.store.models import CLAIMABLE_STATES, CallRecord, Job, JobState, Transition

log = structlog.get_logger("speechai")


class LostOwnership(Exception):
    """The job's version moved on: someone else owns it now."""


def _document(job: Job) -> dict[str, Any]:
    return job.model_dump(by_alias=True, mode="python", exclude={"revision_id"})


async def checkpoint(job: Job, *, outage_backoff_s: float = 0.5, max_backoff_s: float = 5.0) -> None:
    """Persist the whole job, waiting out a database outage (the state stays in memory meanwhile).

    A replace whose reply was lost may or may not have been applied; the checkpoint token tells.
    """
    token = uuid.uuid4().hex
    doc = _document(job)
    doc["version"], doc["ckpt"] = job.version + 1, token
    uncertain, delay = False, outage_backoff_s
    while True:
        try:
            result = await Job.get_pymongo_collection().replace_one({"_id": job.id, "version": job.version}, doc)
            if result.matched_count == 1:
                break
            if uncertain:
                stored = await Job.get_pymongo_collection().find_one({"_id": job.id}, {"ckpt": 1})
                if stored is not None and stored.get("ckpt") == token:
                    break
            raise LostOwnership(f"job {job.id} changed under us (expected version {job.version})")
        except ConnectionFailure as exc:  # includes server selection timeouts and "not primary"
            uncertain = True
            log.warning("checkpoint_waiting_for_database", job_id=str(job.id), error=str(exc))
            await anyio.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
    job.version += 1
    job.ckpt = token


def transition(job: Job, to_state: JobState, reason: str, at: datetime) -> None:
    """Record a state change on the in-memory job; the next checkpoint persists it."""
    job.history.append(Transition(at=at, from_state=job.state, to_state=to_state, reason=reason))
    job.state = to_state
    job.last_reason = reason
    job.updated_at = at


async def claim_due(batch_id: str, owner: str, lease_until_ms: int, now: datetime) -> Job | None:
    """Atomically take one due job of a batch (oldest ``next_try_at`` first) and lease it."""
    raw = await Job.get_pymongo_collection().find_one_and_update(
        {"batch_id": batch_id, "state": {"$in": [s.value for s in CLAIMABLE_STATES]},
         "next_try_at": {"$lte": now}},
        {"$set": {"state": JobState.IN_FLIGHT.value, "lease": {"owner": owner, "until_ms": lease_until_ms},
                  "waiting_reason": None},
         "$inc": {"version": 1}},
        sort=[("next_try_at", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return Job.model_validate(raw) if raw else None


async def claim_expired(owner: str, lease_until_ms: int, now_ms: int) -> Job | None:
    """Take over one in-flight job whose lease has expired (its owner died or hung)."""
    raw = await Job.get_pymongo_collection().find_one_and_update(
        {"state": JobState.IN_FLIGHT.value, "lease.until_ms": {"$lt": now_ms}},
        {"$set": {"lease": {"owner": owner, "until_ms": lease_until_ms}}, "$inc": {"version": 1}},
        return_document=ReturnDocument.AFTER,
    )
    return Job.model_validate(raw) if raw else None


async def renew_leases(owner: str, job_ids: Sequence[Any], lease_until_ms: int) -> int:
    """One bulk write per heartbeat for every job this owner holds. Version is untouched on purpose:
    a heartbeat is not a state change, and the owner's next checkpoint carries a fresh lease anyway."""
    if not job_ids:
        return 0
    result = await Job.get_pymongo_collection().update_many(
        {"_id": {"$in": list(job_ids)}, "state": JobState.IN_FLIGHT.value, "lease.owner": owner},
        {"$set": {"lease.until_ms": lease_until_ms}},
    )
    return result.modified_count


async def save_call_payload(record: CallRecord) -> None:
    """Keep the latest full provider payload of a call (upsert by call id)."""
    doc = record.model_dump(by_alias=True, mode="python", exclude={"revision_id", "id"})
    await CallRecord.get_pymongo_collection().replace_one({"call_id": record.call_id}, doc, upsert=True)
