"""Job persistence: whole-document checkpoints fenced by an integer version, claims and leases.

A checkpoint is ``replace_one({_id, version: v}, doc with version v+1)``. Zero matches means another
owner changed the job (a takeover after our lease expired): the caller must stop touching it.
Claims are bulk point updates by ``_id`` with only integer/string ``$set`` values, because the embedded
server stores a ``$set`` datetime as a string and answers ranges and sorts from an index only on integer
fields (DESIGN.md section 6); the scheduler finds the due ids in its in-memory due index.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import anyio
import structlog
from pymongo import ReplaceOne, ReturnDocument
from pymongo.errors import ConnectionFailure

from actors.batcher import Batcher
from speechai.store.models import (
    BULK_MAX,
    CLAIMABLE_STATES,
    CallRecord,
    Job,
    JobState,
    Transition,
    epoch_ms,
    wall_ms,
)

log = structlog.get_logger("speechai")


class LostOwnership(Exception):
    """The job's version moved on: someone else owns it now."""


def _document(job: Job) -> dict[str, Any]:
    doc = job.model_dump(by_alias=True, mode="python", exclude={"revision_id"})
    doc["next_try_ms"] = epoch_ms(job.next_try_at)
    doc["sync_ms"] = wall_ms()
    return doc


async def _replace_jobs(items: list[tuple[Any, int, dict[str, Any]]]) -> list[bool]:
    """Version-fenced replaces of every checkpoint of one moment in one bulk write; per item, whether
    it matched. A shortfall (someone else moved a job on) is resolved by reading the tokens back."""
    coll = Job.get_pymongo_collection()
    if len(items) == 1:
        job_id, version, doc = items[0]
        return [(await coll.replace_one({"_id": job_id, "version": version}, doc)).matched_count == 1]
    result = await coll.bulk_write([ReplaceOne({"_id": i, "version": v}, doc) for i, v, doc in items],
                                   ordered=False)
    if result.matched_count == len(items):
        return [True] * len(items)
    stored = {raw["_id"]: raw.get("ckpt") async for raw in coll.find({"_id": {"$in": [i for i, _, _ in items]}},
                                                                      {"ckpt": 1})}
    return [stored.get(i) == doc["ckpt"] for i, _, doc in items]


_checkpoints: Batcher[tuple[Any, int, dict[str, Any]], bool] = Batcher(_replace_jobs, max_items=BULK_MAX)


async def _replace_calls(docs: list[dict[str, Any]]) -> list[None]:
    coll = CallRecord.get_pymongo_collection()
    if len(docs) == 1:
        await coll.replace_one({"call_id": docs[0]["call_id"]}, docs[0], upsert=True)
    else:
        await coll.bulk_write([ReplaceOne({"call_id": d["call_id"]}, d, upsert=True) for d in docs], ordered=True)
    return [None] * len(docs)


# Written after the call's line is free (off the path to the next dial): a short wait lets the calls
# that end around the same moment share one bulk write.
_call_payloads: Batcher[dict[str, Any], None] = Batcher(_replace_calls, window_s=0.05, max_items=BULK_MAX)


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
            # Checkpoints of many jobs in one moment go out as one bulk write.
            if await _checkpoints.submit((job.id, job.version, doc)):
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
    job.next_try_ms, job.sync_ms = doc["next_try_ms"], doc["sync_ms"]


def dial_pending(job: Job) -> bool:
    """In flight, but no attempt of it may have reached the provider: its holder is still making its
    checks or waiting for a line. A change written now (version-fenced) only makes the holder let go."""
    last = job.current_attempt
    return job.state == JobState.IN_FLIGHT and not (last is not None and last.outcome is None
                                                    and last.placed is not False)


def transition(job: Job, to_state: JobState, reason: str, at: datetime) -> None:
    """Record a state change on the in-memory job; the next checkpoint persists it."""
    job.history.append(Transition(at=at, from_state=job.state, to_state=to_state, reason=reason))
    job.state = to_state
    job.last_reason = reason
    job.updated_at = at


CLAIMABLE = [s.value for s in CLAIMABLE_STATES]
# What the due index needs of a waiting job.
INDEX_FIELDS = {"_id": 1, "batch_id": 1, "state": 1, "next_try_ms": 1, "sync_ms": 1, "priority": 1}


def _lease(owner: str, gen: int, until_ms: int, claim: str) -> dict[str, Any]:
    return {"owner": owner, "until_ms": until_ms, "gen": gen, "claim": claim}


async def _read_back(ids: Sequence[Any], claim: str) -> list[Job]:
    """The jobs of ``ids`` that a bulk claim tagged with ``claim`` won."""
    raws = Job.get_pymongo_collection().find({"_id": {"$in": list(ids)}, "lease.claim": claim})
    return [Job.model_validate(raw) async for raw in raws]


async def claim_many(ids: Sequence[Any], owner: str, gen: int, lease_until_ms: int, now_ms: int) -> list[Job]:
    """Lease every job of ``ids`` that is still waiting and due: two point commands for the lot.

    The state filter makes each document's claim atomic: another instance's claim of the same job
    fails the filter, so a job is never won twice."""
    if not ids:
        return []
    claim = uuid.uuid4().hex
    query = {"_id": {"$in": list(ids)}, "state": {"$in": CLAIMABLE}, "next_try_ms": {"$lte": now_ms}}
    update = {"$set": {"state": JobState.IN_FLIGHT.value, "lease": _lease(owner, gen, lease_until_ms, claim),
                       "sync_ms": wall_ms()},
              "$inc": {"version": 1}}
    if len(ids) == 1:  # one command, the document back with it
        raw = await Job.get_pymongo_collection().find_one_and_update(query, update,
                                                                     return_document=ReturnDocument.AFTER)
        return [Job.model_validate(raw)] if raw else []
    result = await Job.get_pymongo_collection().update_many(query, update)
    return await _read_back(ids, claim) if result.modified_count else []


async def expired_leases(now_ms: int, limit: int) -> list[Any]:
    """Ids of in-flight jobs whose lease ran out (owner dead or hung), from the integer lease index."""
    raws = Job.get_pymongo_collection().find(
        {"lease.until_ms": {"$lt": now_ms}, "state": JobState.IN_FLIGHT.value}, {"_id": 1}).limit(limit)
    return [raw["_id"] async for raw in raws]


async def take_over(ids: Sequence[Any], owner: str, gen: int, lease_until_ms: int, now_ms: int) -> list[Job]:
    """Lease in-flight jobs whose lease is still expired; the version bump fences their old owner."""
    if not ids:
        return []
    claim = uuid.uuid4().hex
    result = await Job.get_pymongo_collection().update_many(
        {"_id": {"$in": list(ids)}, "state": JobState.IN_FLIGHT.value, "lease.until_ms": {"$lt": now_ms}},
        {"$set": {"lease": _lease(owner, gen, lease_until_ms, claim), "sync_ms": wall_ms()},
         "$inc": {"version": 1}})
    return await _read_back(ids, claim) if result.modified_count else []


async def readopt_own(owner: str, gen: int, lease_until_ms: int) -> list[Job]:
    """At start: every in-flight job an earlier process of this instance id held, leased to this
    generation at once (expired or not), whatever its lease says."""
    claim = uuid.uuid4().hex
    result = await Job.get_pymongo_collection().update_many(
        {"lease.owner": owner, "state": JobState.IN_FLIGHT.value, "lease.gen": {"$lt": gen}},
        {"$set": {"lease": _lease(owner, gen, lease_until_ms, claim), "sync_ms": wall_ms()},
         "$inc": {"version": 1}})
    if not result.modified_count:
        return []
    raws = Job.get_pymongo_collection().find({"lease.owner": owner, "state": JobState.IN_FLIGHT.value,
                                              "lease.claim": claim})
    return [Job.model_validate(raw) async for raw in raws]


async def waiting_rows(batch_id: str) -> AsyncIterator[dict[str, Any]]:
    """Index rows of a batch's waiting jobs: one equality query per state, since the embedded server
    answers `state $in` with a scan."""
    for state in CLAIMABLE:
        async for row in Job.get_pymongo_collection().find({"batch_id": batch_id, "state": state}, INDEX_FIELDS):
            yield row


def changed_since(sync_ms: int) -> AsyncIterator[dict[str, Any]]:
    """Index rows (any state) of jobs written since ``sync_ms``: an integer range on an index."""
    return Job.get_pymongo_collection().find({"sync_ms": {"$gte": sync_ms}}, INDEX_FIELDS)


async def renew_leases(owner: str, gen: int, job_ids: Sequence[Any], lease_until_ms: int) -> int:
    """One bulk write per heartbeat for every job this owner holds. Version is untouched on purpose:
    a heartbeat is not a state change, and the owner's next checkpoint carries a fresh lease anyway."""
    if not job_ids:
        return 0
    result = await Job.get_pymongo_collection().update_many(
        {"_id": {"$in": list(job_ids)}, "state": JobState.IN_FLIGHT.value, "lease.owner": owner,
         "lease.gen": gen},
        {"$set": {"lease.until_ms": lease_until_ms}},
    )
    return result.modified_count


async def save_call_payload(record: CallRecord) -> None:
    """Keep the latest full provider payload of a call (upsert by call id)."""
    doc = record.model_dump(by_alias=True, mode="python", exclude={"revision_id", "id"})
    await _call_payloads.submit(doc)
