"""The dashboard's headline figures, kept current at the pace of the job counts.

Calls placed and finished, outcomes, contacts, successes, talk time, cost so far and the calls per local
hour are running sums over every job's attempts. One full pass (a cursor per batch and state, the
(batch_id, state) index) builds them; after that each refresh reads only the jobs written since the last
one, from the ``sync_ms`` index (every checkpoint stamps it), subtracts what each such job counted before
and adds what it counts now. A refresh during a campaign reads a few dozen jobs, not the whole campaign.

The window overlaps the previous one by ``OVERLAP_MS`` (instances' clocks differ a little; a job read
twice is simply counted once, by id). Jobs deleted by ``speechai jobs clean`` never show up as changed,
so when fewer jobs exist than are counted (the state counts tell), the figures are rebuilt; they are
also rebuilt every ``REBUILD_S`` in case a write slipped past the window.

Counting follows ``speechai.reports.data``: a call is a placed attempt, finished once it has an outcome,
a contact a ``conversation``, cost the provider's cents as exact decimals, the hour the attempt's local
hour of creation in its batch's timezone.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import anyio.lowlevel

from speechai.reports.data import batch_tz
from speechai.reports.values import cents
from speechai.store.models import Batch, Job, JobState, wall_ms

OVERLAP_MS = 5_000
REBUILD_S = 600.0
YIELD_EVERY = 200  # documents between two yields to the event loop during a full pass
FIELDS = {"batch_id": 1, "attempts": 1}


@dataclass(frozen=True)
class JobFigures:
    """What one job adds to the headline figures."""

    batch_id: str
    calls: int = 0
    not_placed: int = 0
    finished: int = 0
    contacts: int = 0
    successes: int = 0
    talk_ms: int = 0
    cost: Decimal = Decimal(0)
    outcomes: tuple[str, ...] = ()
    hours: tuple[tuple[int, bool], ...] = ()  # (local hour, success) per placed attempt


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def job_figures(raw: dict[str, Any], tz: tzinfo) -> JobFigures:
    calls = not_placed = finished = contacts = successes = talk = 0
    cost = Decimal(0)
    outcomes: list[str] = []
    hours: list[tuple[int, bool]] = []
    for a in raw.get("attempts") or ():
        placed = a.get("placed")
        if placed is not True:
            not_placed += placed is False
            continue
        calls += 1
        outcome = a.get("outcome")
        success = a.get("success") is True
        if outcome is not None:
            finished += 1
            outcomes.append(outcome)
        contacts += outcome == "conversation"
        successes += success
        talk += int(a.get("duration_ms") or 0)
        cost += cents(a.get("cost_cents"))
        created = a.get("created_at")
        if isinstance(created, datetime):
            hours.append((_aware(created).astimezone(tz).hour, success))
    return JobFigures(str(raw.get("batch_id")), calls, not_placed, finished, contacts, successes, talk, cost,
                      tuple(outcomes), tuple(hours))


@dataclass
class _Sums:
    calls: int = 0
    not_placed: int = 0
    finished: int = 0
    contacts: int = 0
    successes: int = 0
    talk_ms: int = 0
    cost: Decimal = field(default_factory=Decimal)
    outcomes: Counter[str] = field(default_factory=Counter)
    hour_calls: Counter[int] = field(default_factory=Counter)
    hour_successes: Counter[int] = field(default_factory=Counter)
    cost_by_batch: dict[str, Decimal] = field(default_factory=dict)

    def add(self, f: JobFigures, sign: int) -> None:
        self.calls += sign * f.calls
        self.not_placed += sign * f.not_placed
        self.finished += sign * f.finished
        self.contacts += sign * f.contacts
        self.successes += sign * f.successes
        self.talk_ms += sign * f.talk_ms
        self.cost += sign * f.cost
        self.cost_by_batch[f.batch_id] = self.cost_by_batch.get(f.batch_id, Decimal(0)) + sign * f.cost
        for outcome in f.outcomes:
            self.outcomes[outcome] += sign
        for hour, success in f.hours:
            self.hour_calls[hour] += sign
            self.hour_successes[hour] += sign * success


def _plain(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _rate(part: int, whole: int) -> float | None:
    return None if not whole else round(part / whole, 4)


class LiveFigures:
    def __init__(self) -> None:
        self.jobs: dict[Any, JobFigures] = {}
        self.sums = _Sums()
        self.synced_ms: int | None = None
        self.built_at = 0.0
        self.tz_of: dict[str, tzinfo] = {}
        self.reads = 0  # job documents read since start (the cost of keeping up, for tests and tuning)

    def _tz(self, batch_id: str) -> tzinfo:
        return self.tz_of.get(batch_id) or ZoneInfo("America/Santiago")

    def _put(self, raw: dict[str, Any]) -> None:
        self.reads += 1
        new = job_figures(raw, self._tz(str(raw.get("batch_id"))))
        old = self.jobs.get(raw["_id"])
        if old == new:
            return
        if old is not None:
            self.sums.add(old, -1)
        self.sums.add(new, 1)
        self.jobs[raw["_id"]] = new

    async def _rebuild(self, batch_ids: list[str]) -> None:
        started = wall_ms()
        self.jobs, self.sums = {}, _Sums()
        coll = Job.get_pymongo_collection()
        n = 0
        for bid in batch_ids:
            for state in JobState:  # (batch_id, state) matched in full: answered from its index
                async for raw in coll.find({"batch_id": bid, "state": state.value}, FIELDS, batch_size=500):
                    if raw["_id"] not in self.jobs:  # a job that moved state during the pass: counted once
                        self._put(raw)
                    n += 1
                    if n % YIELD_EVERY == 0:
                        await anyio.lowlevel.checkpoint()  # a large campaign's first pass must not stall the runtime
        self.synced_ms, self.built_at = started, time.monotonic()

    async def _catch_up(self) -> None:
        assert self.synced_ms is not None
        started = wall_ms()
        cursor = Job.get_pymongo_collection().find({"sync_ms": {"$gte": self.synced_ms - OVERLAP_MS}}, FIELDS)
        async for raw in cursor:  # an integer range on the sync_ms index
            self._put(raw)
        self.synced_ms = started

    async def refresh(self, batches: list[dict[str, Any]], jobs_now: int) -> dict[str, Any]:
        """The figures now; ``batches`` are the batch documents (with ``call_settings.timezone`` when
        known) and ``jobs_now`` how many jobs they have (the state counts' sum)."""
        for b in batches:
            if b["_id"] not in self.tz_of:
                self.tz_of[b["_id"]] = batch_tz(b)
        stale = time.monotonic() - self.built_at > REBUILD_S
        if self.synced_ms is None or stale or jobs_now < len(self.jobs):
            await self._rebuild([b["_id"] for b in batches])
        else:
            await self._catch_up()
        return self.figures()

    def figures(self) -> dict[str, Any]:
        s = self.sums
        return {
            "totals": {"calls": s.calls, "finished": s.finished, "in_progress": s.calls - s.finished,
                       "not_placed": s.not_placed, "contacts": s.contacts, "successes": s.successes,
                       "contact_rate": _rate(s.contacts, s.calls), "success_rate": _rate(s.successes, s.calls),
                       "talk_minutes": round(s.talk_ms / 60000, 2), "cost_cents": _plain(s.cost),
                       "cost_per_call_cents": round(float(s.cost) / s.calls, 4) if s.calls else None},
            "outcomes": {k: v for k, v in s.outcomes.most_common() if v},
            "hours": [{"hour": h, "calls": s.hour_calls[h], "successes": s.hour_successes[h]}
                      for h in sorted(s.hour_calls) if s.hour_calls[h]],
            "cost_by_batch": {b: _plain(c) for b, c in s.cost_by_batch.items()},
        }


async def batch_docs() -> list[dict[str, Any]]:
    return await Batch.get_pymongo_collection().find(
        {}, {"name": 1, "account_id": 1, "status": 1, "status_reason": 1, "waiting_reason": 1,
             "call_settings": 1}).sort("_id", 1).to_list()
