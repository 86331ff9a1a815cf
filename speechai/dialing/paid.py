"""Bulk "these people paid": the creditor's list of RUTs and/or phones stops their jobs at once.

A waiting job (pending, retry scheduled, suspended) ends ``excluded`` with reason ``paid``, written whole
conditional on its version (a job that moved meanwhile is read again). A job in flight is left to its
call actor (the live call is never cut), but every key of the person goes on the account's do-not-call
list with reason ``paid``, which the dial gate checks: it is never dialed again.

Jobs are found by ``person_key`` (the RUT when the file had one, else the first phone): the one person
index of the jobs collection, one equality read per key (the embedded server answers ``$in`` from an index
only on ``_id``), a few at a time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import anyio
from pymongo.errors import DuplicateKeyError

from speechai.store.jobs import LostOwnership, checkpoint, dial_pending, transition
from speechai.store.models import DoNotCall, Job, JobState

PAID = "paid"
WAITING = (JobState.PENDING, JobState.RETRY, JobState.SUSPENDED)
# One list; a larger one is sent in parts. Each key is one indexed read: 10,000 take seconds, well inside
# a request's time limit.
MAX_KEYS = 10_000
READS_AT_ONCE = 16
MAX_TRIES = 5  # re-reads of a job that moved while it was being stopped


@dataclass
class PaidResult:
    stopped: int = 0  # waiting jobs now excluded
    live: int = 0  # jobs in flight: their call goes on, they are never dialed again
    already_final: int = 0  # done, failed, excluded or cancelled before
    unmatched: list[str] = field(default_factory=list)  # keys that matched no job of the account
    do_not_call_added: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"stopped": self.stopped, "live": self.live, "already_final": self.already_final,
                "unmatched": self.unmatched, "do_not_call_added": self.do_not_call_added}


# --- the list --------------------------------------------------------------------------------------------


def read_keys(raw: Iterable[str], normalize: Callable[[str], str]) -> tuple[list[str], list[str]]:
    """Keys as jobs carry them (``normalize``: the do-not-call key rule, a RUT as ``12345678-5``, a phone in
    E.164), deduplicated in order, and the entries that are neither a RUT nor a phone."""
    keys: list[str] = []
    invalid: list[str] = []
    for entry in raw:
        if not entry.strip():
            continue
        try:
            keys.append(normalize(entry))
        except ValueError:
            invalid.append(entry.strip()[:40])
    return list(dict.fromkeys(keys)), invalid


def entries_of_csv(text: str) -> list[str]:
    """The first cell of each row; a first row without digits is a header (``rut``, ``telefono``)."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0].strip()]
    if rows and not any(c.isdigit() for c in rows[0][0]):
        rows = rows[1:]
    return [r[0] for r in rows]


def entries_of_json(value: object) -> list[str]:
    """``["12345678-5", "+569…"]`` or ``{"keys": [...]}``; ValueError naming the field otherwise."""
    if isinstance(value, dict):
        value = value.get("keys")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("keys: expected a JSON list of RUTs and/or phones (text), or {\"keys\": [...]}")
    return value


def entries_of_file(name: str, text: str) -> list[str]:
    return entries_of_json(json.loads(text)) if name.lower().endswith(".json") else entries_of_csv(text)


def check_size(keys: Sequence[str]) -> None:
    if len(keys) > MAX_KEYS:
        raise ValueError(f"keys: {len(keys)} entries; at most {MAX_KEYS} per list")


# --- the store --------------------------------------------------------------------------------------------


def person_query(account_id: str, key: str) -> dict[str, str]:
    """A person's jobs: the indexed ``person_key`` equality (pinned by tests/dialing/test_paid.py)."""
    return {"person_key": key, "account_id": account_id}


async def _jobs_of(account_id: str, keys: Sequence[str]) -> list[Job]:
    found: dict[str, list[Job]] = {}
    todo = iter(keys)

    async def worker() -> None:
        for key in todo:  # shared: each key is read by one worker
            found[key] = await Job.find(person_query(account_id, key)).to_list()

    async with anyio.create_task_group() as tg:
        for _ in range(READS_AT_ONCE):
            tg.start_soon(worker)
    return [job for key in keys for job in found[key]]


async def _list_do_not_call(account_id: str, keys: Iterable[str], now: datetime) -> int:
    added = 0
    for key in dict.fromkeys(keys):
        try:
            await DoNotCall(account_id=account_id, key=key, reason=PAID, added_at=now).insert()
            added += 1
        except DuplicateKeyError:
            pass  # already listed (by an earlier list, or the person asked)
    return added


async def _stop(job: Job, now: datetime) -> str:
    """``stopped``, ``live`` or ``already_final``: the job excluded if it is waiting."""
    for _ in range(MAX_TRIES):
        if job.state == JobState.IN_FLIGHT and not dial_pending(job):
            return "live"
        if job.state not in WAITING and not dial_pending(job):
            return "already_final"
        transition(job, JobState.EXCLUDED, PAID, now)
        job.lease = None  # a holder that has not dialed lets go at its next write
        try:
            await checkpoint(job)
            return "stopped"
        except LostOwnership:
            fresh = await Job.get(job.id)
            if fresh is None:
                return "already_final"
            job = fresh
    return "live"  # still moving (claimed and released again and again): the do-not-call entry stops it


async def mark_paid(account_id: str, keys: Sequence[str], now: datetime) -> PaidResult:
    """Stop the account's jobs of the people in ``keys`` (normalized) and list them as do-not-call."""
    check_size(keys)
    jobs = await _jobs_of(account_id, keys)
    result = PaidResult()
    matched = {j.person_key for j in jobs}
    result.unmatched = [k for k in keys if k not in matched]
    people = [k for j in jobs for k in (j.person_key, j.national_id, *(p.number for p in j.phones)) if k]
    result.do_not_call_added = await _list_do_not_call(account_id, people, now)
    for job in jobs:
        outcome = await _stop(job, now)
        setattr(result, outcome, getattr(result, outcome) + 1)
    return result
