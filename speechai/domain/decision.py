"""What happens to a job after an attempt, or when the person's caps refuse a dial. Pure.

Every planned time is at most ``HORIZON`` after ``now``: settings are bounded already, and this clamp
keeps a far-future callback request or a value that slipped past validation from overflowing a date
(which would crash the call actor on every finished call) or parking a job for years.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from speechai.domain.caps import CapVerdict
from speechai.domain.outcomes import Classification, OutcomeClass
from speechai.domain.settings import MAX_PERSON_DAYS, MAX_RETRY_DELAY_MIN, CallSettings
from speechai.domain.windows import fmt_local, next_dialable

HORIZON = timedelta(days=MAX_PERSON_DAYS)  # the latest next try ever planned, counted from now

Action = Literal["done", "retry", "next_phone", "failed", "excluded", "suspended", "backoff"]


@dataclass(frozen=True)
class NextStep:
    action: Action
    next_try_at: datetime | None  # for retry/next_phone/backoff: already a dialable instant
    mark_phone_bad: bool
    reason: str  # operator-readable, e.g. "no answer (dial_no_answer); retry at 2026-03-02 10:00 -03"


_LABEL = {
    OutcomeClass.CONVERSATION: "conversation not successful",
    OutcomeClass.VOICEMAIL: "voicemail",
    OutcomeClass.NO_ANSWER: "no answer",
    OutcomeClass.BAD_NUMBER: "bad number",
    OutcomeClass.CALLER_ID: "caller id or route blocked",
    OutcomeClass.CAPACITY: "provider at capacity",
    OutcomeClass.ACCOUNT: "account cannot pay",
    OutcomeClass.PROVIDER_ERROR: "provider error",
}


def retry_delay(settings: CallSettings, outcome: OutcomeClass) -> timedelta:
    d = settings.retry_delay_min
    minutes = {
        OutcomeClass.CONVERSATION: d.conversation,
        OutcomeClass.VOICEMAIL: d.voicemail,
        OutcomeClass.NO_ANSWER: d.no_answer,
        OutcomeClass.PROVIDER_ERROR: d.provider_error,
        OutcomeClass.CALLER_ID: d.provider_error,
        OutcomeClass.CAPACITY: d.capacity,
    }.get(outcome, 0)
    return timedelta(minutes=min(max(0, minutes), MAX_RETRY_DELAY_MIN))


def _within_horizon(now: datetime, at: datetime) -> datetime:
    return min(at, now + HORIZON)


def decide_next(*, classification: Classification, settings: CallSettings, now: datetime,
                attempts_counted: int, phones_usable_after: int,
                callback_at: datetime | None = None) -> NextStep:
    """The job's next step after an attempt.

    ``attempts_counted`` includes this attempt; ``phones_usable_after`` is the number of usable phones
    left if this one is marked bad. Every ``next_try_at`` is pushed to a dialable instant.
    """
    c = classification
    what = f"{_LABEL[c.outcome]} ({c.reason})"
    if c.outcome == OutcomeClass.CONVERSATION and c.success:
        return NextStep("done", None, False, f"success ({c.reason})")
    if c.do_not_call:
        return NextStep("excluded", None, False, f"person asked not to be called ({c.reason})")
    if c.outcome == OutcomeClass.ACCOUNT:
        return NextStep("suspended", None, False, f"{what}; dialing paused for the account")
    if c.outcome in (OutcomeClass.CAPACITY, OutcomeClass.CALLER_ID):
        # not an attempt (nobody's phone rang): never fails the job, never marks the person's phone bad
        at = next_dialable(settings, now + retry_delay(settings, c.outcome))
        return NextStep("backoff", at, False, f"{what}; redial at {fmt_local(settings, at)}")
    if c.outcome == OutcomeClass.BAD_NUMBER:
        if phones_usable_after <= 0:
            return NextStep("failed", None, True, f"{what}; all phones bad")
        at = next_dialable(settings, now)
        return NextStep("next_phone", at, True, f"{what}; next phone at {fmt_local(settings, at)}")
    if attempts_counted >= settings.max_attempts:
        return NextStep("failed", None, False,
                        f"{what}; {attempts_counted} of {settings.max_attempts} attempts used")
    asked = callback_at is not None and callback_at > now
    due = _within_horizon(now, callback_at) if callback_at is not None and asked else \
        now + retry_delay(settings, c.outcome)
    at = next_dialable(settings, due)
    note = " (callback requested)" if asked else ""
    return NextStep("retry", at, False, f"{what}; retry at {fmt_local(settings, at)}{note}")


def step_for_caps(verdict: CapVerdict, settings: CallSettings, now: datetime) -> NextStep | None:
    """A refused dial as a step (not an attempt); None when the caps allow dialing now."""
    if verdict.allowed:
        return None
    if verdict.exclude:
        return NextStep("excluded", None, False, verdict.reason or "excluded by person rules")
    at = next_dialable(settings, _within_horizon(now, max(verdict.retry_at or now, now)))
    return NextStep("retry", at, False, f"{verdict.reason}; retry at {fmt_local(settings, at)}")
