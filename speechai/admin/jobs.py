"""Operator maintenance of jobs: reset failed or excluded jobs to pending, clean out old finished ones.

Both walk a cursor per (batch, state) — the index the embedded server answers in full — and decide in
Python (dates are compared here, never in a ``$set``). Both are dry runs unless ``apply`` is given.

A reset is a whole-document replace conditional on the job's integer version (like every checkpoint):
a job that changed meanwhile is skipped, never overwritten. It records the transition, makes the job
due now (``next_try_at``/``next_try_ms``), restarts its attempt count, and stamps ``sync_ms`` so every
running instance's due index picks it up within its resync interval.

A clean deletes (after writing them to an archive, when one is named) finished jobs — done, failed,
excluded or cancelled — last changed before the cutoff, with their call payloads and webhook records.
Each delete is conditional on the state and version read, so a job reset or taken meanwhile stays.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bson import json_util
from pymongo import DeleteOne

from speechai.store.models import (
    FINAL_STATES,
    Batch,
    CallRecord,
    Job,
    JobState,
    Transition,
    WebhookEvent,
    epoch_ms,
    wall_ms,
)

RESETTABLE = (JobState.FAILED, JobState.EXCLUDED)
WEBHOOK_EVENTS = ("call_started", "call_ended", "call_analyzed")
CHUNK = 200


def _aware(at: Any) -> datetime | None:
    if not isinstance(at, datetime):
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def batch_ids(batch: str | None) -> list[str]:
    if batch is not None:
        return [batch]
    return [b["_id"] async for b in Batch.get_pymongo_collection().find({}, {"_id": 1}).sort("_id", 1)]


async def jobs_in(states: tuple[JobState, ...], batch: str | None, before: datetime | None,
                  fields: dict[str, int] | None = None) -> AsyncIterator[dict[str, Any]]:
    """Jobs of ``states`` (of one batch or all) last changed before ``before`` (None: any time)."""
    coll = Job.get_pymongo_collection()
    for bid in await batch_ids(batch):
        for state in states:
            async for raw in coll.find({"batch_id": bid, "state": state.value}, fields, batch_size=500):
                changed = _aware(raw.get("updated_at"))
                if before is None or (changed is not None and changed < before):
                    yield raw


async def count_jobs(states: tuple[JobState, ...], batch: str | None) -> int:
    """Jobs of ``states`` (an upper bound for progress), counted by aggregate per (batch, state)."""
    total = 0
    coll = Job.get_pymongo_collection()
    for bid in await batch_ids(batch):
        for state in states:
            rows = await coll.aggregate([{"$match": {"batch_id": bid, "state": state.value}}, {"$count": "n"}])
            total += sum([r["n"] async for r in rows])
    return total


@dataclass
class ResetResult:
    found: list[dict[str, Any]] = field(default_factory=list)  # a summary line per job
    reset: int = 0
    skipped_changed: int = 0


def _reset_document(raw: dict[str, Any], now: datetime, reason: str, *, clear_bad_phones: bool) -> dict[str, Any]:
    job = Job.model_validate(raw)
    job.history.append(Transition(at=now, from_state=job.state, to_state=JobState.PENDING, reason=reason))
    job.state, job.last_reason, job.updated_at = JobState.PENDING, reason, now
    job.next_try_at, job.lease, job.attempts_counted = now, None, 0
    for phone in job.phones:
        phone.attempts = 0
        if clear_bad_phones:
            phone.bad, phone.bad_reason = False, None
    usable = [i for i, p in enumerate(job.phones) if not p.bad]
    job.phone_index = usable[0] if usable else 0
    doc = job.model_dump(by_alias=True, mode="python", exclude={"revision_id"})
    doc.update(version=job.version + 1, next_try_ms=epoch_ms(now), sync_ms=wall_ms())
    return doc


async def reset_jobs(state: JobState, *, batch: str | None, older_than: timedelta | None, now: datetime,
                     apply: bool, clear_bad_phones: bool = False,
                     progress: Callable[[int], None] | None = None) -> ResetResult:
    if state not in RESETTABLE:
        raise ValueError(f"state must be one of {', '.join(s.value for s in RESETTABLE)}, got {state.value!r}")
    before = now - older_than if older_than is not None else None
    reason = f"reset by operator (was {state.value})"
    out = ResetResult()
    coll = Job.get_pymongo_collection()
    async for raw in jobs_in((state,), batch, before):
        usable = sum(1 for p in raw.get("phones") or [] if clear_bad_phones or not p.get("bad"))
        out.found.append({"job_id": str(raw["_id"]), "batch_id": raw.get("batch_id"), "state": state.value,
                          "last_reason": raw.get("last_reason") or "", "updated_at": _aware(raw.get("updated_at")),
                          "usable_phones": usable})
        if apply:
            doc = _reset_document(raw, now, reason, clear_bad_phones=clear_bad_phones)
            result = await coll.replace_one({"_id": raw["_id"], "version": raw.get("version", 0)}, doc)
            if result.matched_count == 1:
                out.reset += 1
            else:
                out.skipped_changed += 1
        if progress is not None:
            progress(len(out.found))
    return out


@dataclass
class CleanResult:
    jobs: int = 0
    calls: int = 0
    deleted_jobs: int = 0
    deleted_calls: int = 0
    deleted_webhooks: int = 0
    kept_changed: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


async def clean_jobs(*, older_than: timedelta, now: datetime, apply: bool, archive: Path | None = None,
                     progress: Callable[[int], None] | None = None) -> CleanResult:
    """Delete (archiving first when ``archive`` is named) finished jobs last changed before the cutoff."""
    out = CleanResult()
    chunk: list[dict[str, Any]] = []
    sink = gzip.open(archive, "at", encoding="utf-8") if (archive is not None and apply) else None
    try:
        async for raw in jobs_in(FINAL_STATES, None, now - older_than):
            out.jobs += 1
            out.by_state[raw["state"]] = out.by_state.get(raw["state"], 0) + 1
            out.calls += sum(1 for a in raw.get("attempts") or [] if a.get("call_id"))
            if apply:
                chunk.append(raw)
                if len(chunk) >= CHUNK:
                    await _delete_chunk(chunk, out, sink)
                    chunk = []
            if progress is not None:
                progress(out.jobs)
        if chunk:
            await _delete_chunk(chunk, out, sink)
    finally:
        if sink is not None:
            sink.close()
    return out


async def _delete_chunk(chunk: list[dict[str, Any]], out: CleanResult, sink: Any) -> None:
    calls = CallRecord.get_pymongo_collection()
    if sink is not None:  # archive before anything is deleted
        for raw in chunk:
            payloads = [c async for c in calls.find({"job_id": str(raw["_id"])})]  # job_id index
            sink.write(json_util.dumps({"job": raw, "calls": payloads}) + "\n")
        sink.flush()
    jobs = Job.get_pymongo_collection()
    await jobs.bulk_write([DeleteOne({"_id": r["_id"], "state": r["state"], "version": r.get("version", 0)})
                           for r in chunk], ordered=False)
    left = {d["_id"] async for d in jobs.find({"_id": {"$in": [r["_id"] for r in chunk]}}, {"_id": 1})}
    gone = [r for r in chunk if r["_id"] not in left]
    out.deleted_jobs += len(gone)
    out.kept_changed += len(chunk) - len(gone)
    if not gone:
        return
    # Point deletes by call id and webhook key: index lookups (an $in on them would scan).
    call_ids = [a["call_id"] for r in gone for a in r.get("attempts") or [] if a.get("call_id")]
    if not call_ids:
        return
    result = await calls.bulk_write([DeleteOne({"call_id": c}) for c in call_ids], ordered=False)
    out.deleted_calls += result.deleted_count
    hooks = await WebhookEvent.get_pymongo_collection().bulk_write(
        [DeleteOne({"key": f"{e}:{c}"}) for c in call_ids for e in WEBHOOK_EVENTS], ordered=False)
    out.deleted_webhooks += hooks.deleted_count
