"""Failure circuit breaker: a batch pauses itself when its attempts end in provider or dial errors far
above normal, so a carrier outage cannot mark every debtor's phone bad and fail the whole batch.

Trips when, in the last ``window_s`` of business time, at least ``min_attempts`` attempts ended and at
least ``ratio`` of them failed (``dial_failed``, a provider error, or create-call refused with a 4xx), or
when ``consecutive_4xx`` create-calls in a row were refused with a 4xx. No-answer, busy, voicemail and
conversations are normal attempts: they never trip it (they dilute the ratio). The state is in memory
per instance and per batch; the pause is in the database, so one instance tripping stops all of them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from speechai.domain.outcomes import OutcomeClass
from speechai.store.models import Attempt

PAUSE_PREFIX = "circuit breaker"


@dataclass(frozen=True)
class BreakerRules:
    min_attempts: int = 20
    ratio: float = 0.5
    window_s: float = 300.0
    consecutive_4xx: int = 10


DEFAULT_RULES = BreakerRules()


def failure_kind(attempt: Attempt) -> str | None:
    """"create_4xx", "dial_failed", "provider_error", or None for a normal attempt (not placed for
    capacity, account or window reasons is not an attempt at all: see ``counts_for_breaker``)."""
    if attempt.call_id is None and attempt.outcome == OutcomeClass.BAD_NUMBER.value:
        return "create_4xx"  # create-call answered 400: nothing was dialed
    if attempt.disconnection_reason == "dial_failed":
        return "dial_failed"
    if attempt.outcome == OutcomeClass.PROVIDER_ERROR.value:
        return "provider_error"
    return None


def counts_for_breaker(attempt: Attempt) -> bool:
    """Attempts that tell something about the route: a placed call, or a create-call the provider refused
    or failed. Capacity (429), payment (402) and window refusals are no evidence either way."""
    if attempt.outcome in (OutcomeClass.CAPACITY.value, OutcomeClass.ACCOUNT.value, "not_placed"):
        return False
    return attempt.outcome is not None


@dataclass(frozen=True)
class _Event:
    at: datetime
    kind: str | None
    job_id: str
    phone: str | None  # the phone this failure marked bad, if it did


@dataclass(frozen=True)
class Trip:
    attempts: int
    failures: int
    consecutive_4xx: int
    by_kind: dict[str, int]
    marked_bad: list[tuple[str, str]]  # (job id, phone) marked bad by the storm's attempts

    def reason(self, rules: BreakerRules) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.by_kind.items()))
        if self.consecutive_4xx >= rules.consecutive_4xx:
            why = f"{self.consecutive_4xx} create-calls in a row refused with 4xx"
        else:
            why = (f"{self.failures} of {self.attempts} attempts in {rules.window_s / 60:g} min failed "
                   f"(limit {rules.ratio:.0%} of at least {rules.min_attempts})")
        return f"{PAUSE_PREFIX}: {why} [{kinds}]; resume when the route is fixed"


@dataclass
class BatchBreaker:
    """One batch's recent attempts on this instance. Pure: fed outcomes, answers whether to trip."""

    rules: BreakerRules = DEFAULT_RULES
    events: deque[_Event] = field(default_factory=deque)
    consecutive_4xx: int = 0
    run_marks: list[tuple[str, str]] = field(default_factory=list)  # phones marked bad by the current 4xx run
    tripped: bool = False
    # the pause this trip asked for is written: from then on an active batch means an operator resumed it
    pause_written: bool = False

    def record(self, at: datetime, kind: str | None, job_id: str, phone_marked: str | None) -> Trip | None:
        """One finished attempt; a Trip the first time the rules are broken (None while tripped)."""
        self.events.append(_Event(at, kind, job_id, phone_marked))
        self.consecutive_4xx = self.consecutive_4xx + 1 if kind == "create_4xx" else 0
        if kind != "create_4xx":
            self.run_marks.clear()
        elif phone_marked is not None:
            self.run_marks.append((job_id, phone_marked))
        horizon = at - timedelta(seconds=self.rules.window_s)
        while self.events and self.events[0].at < horizon:
            self.events.popleft()
        if self.tripped:
            return None
        failures = [e for e in self.events if e.kind is not None]
        by_ratio = (len(self.events) >= self.rules.min_attempts
                    and len(failures) >= self.rules.ratio * len(self.events))
        if not by_ratio and self.consecutive_4xx < self.rules.consecutive_4xx:
            return None
        self.tripped = True
        by_kind: dict[str, int] = {}
        for e in failures:
            by_kind[e.kind or ""] = by_kind.get(e.kind or "", 0) + 1
        marked = [(e.job_id, e.phone) for e in failures if e.phone is not None]
        return Trip(attempts=len(self.events), failures=len(failures), consecutive_4xx=self.consecutive_4xx,
                    by_kind=by_kind, marked_bad=list(dict.fromkeys([*marked, *self.run_marks])))

    def reset(self) -> None:
        """The operator resumed the batch: start counting afresh."""
        self.events.clear()
        self.run_marks.clear()
        self.consecutive_4xx = 0
        self.tripped = False
        self.pause_written = False


@dataclass
class Breakers:
    """Every batch's breaker on this instance."""

    rules: BreakerRules = DEFAULT_RULES
    batches: dict[str, BatchBreaker] = field(default_factory=dict)

    def of(self, batch_id: str) -> BatchBreaker:
        if batch_id not in self.batches:
            self.batches[batch_id] = BatchBreaker(self.rules)
        return self.batches[batch_id]


def resumed_by_operator(status: Any, status_reason: str | None) -> bool:
    """A tripped batch that is active again and no longer paused by us: resumed."""
    return str(getattr(status, "value", status)) == "active" and not (status_reason or "").startswith(PAUSE_PREFIX)
