"""Per-person rules, checked at dial time over the person's whole history in the account.

A person is keyed by national id, else phone, across every batch of the same account (the caller
gathers the events). Rolling windows and quiet periods are measured exactly (N x 24 h from the event),
which is never looser than a calendar-day reading; the daily cap uses the batch's local date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from speechai.domain.policy_types import PersonPolicy, preset_person_policy
from speechai.domain.settings import CallSettings
from speechai.domain.windows import next_local_midnight


@dataclass(frozen=True)
class ContactEvent:
    at: datetime  # when the attempt was placed (aware)
    counted: bool  # an attempt against the person (not capacity / account / bad number)
    answered: bool  # a human conversation happened
    success: bool


@dataclass(frozen=True)
class CapVerdict:
    allowed: bool
    reason: str | None
    retry_at: datetime | None  # when every time-based cap would allow it (absent new events)
    exclude: bool


ALLOW = CapVerdict(allowed=True, reason=None, retry_at=None, exclude=False)


def check_person_caps(events: Sequence[ContactEvent], policy: PersonPolicy, *, now: datetime, tz: ZoneInfo,
                      do_not_call: bool = False, has_success: bool = False) -> CapVerdict:
    """May this person be dialed at ``now``? Exclusions first, then time caps (all reasons reported)."""
    if has_success or any(e.success for e in events):
        return _exclude("already reached with success: never called again")
    if do_not_call:
        return _exclude("on the do-not-call list")
    counted = sorted((e for e in events if e.counted), key=lambda e: e.at)
    if policy.max_no_answer_days is not None:
        days = no_answer_days(events, tz)
        if days >= policy.max_no_answer_days:
            return _exclude(f"called on {days} distinct days without an answer "
                            f"(limit {policy.max_no_answer_days})")

    blocks: list[tuple[datetime, str]] = []
    if policy.max_calls_per_day is not None:
        today = now.astimezone(tz).date()
        n = sum(1 for e in counted if e.at.astimezone(tz).date() == today)
        if n >= policy.max_calls_per_day:
            blocks.append((next_local_midnight(tz, now),
                           f"{n} calls today (limit {policy.max_calls_per_day} a day)"))
    if policy.rolling_window_days is not None and policy.max_calls_in_window is not None:
        span = timedelta(days=policy.rolling_window_days)
        inside = [e for e in counted if e.at > now - span]
        if len(inside) >= policy.max_calls_in_window:
            # wait until enough of the oldest leave the window that one more call fits
            leaving = inside[len(inside) - policy.max_calls_in_window]
            blocks.append((leaving.at + span, f"{len(inside)} calls in the last {policy.rolling_window_days} "
                                              f"days (limit {policy.max_calls_in_window})"))
    if policy.quiet_days_after_conversation is not None:
        quiet = timedelta(days=policy.quiet_days_after_conversation)
        talks = [e.at for e in events if e.answered and e.at > now - quiet]
        if talks:
            blocks.append((max(talks) + quiet, f"conversation less than "
                                               f"{policy.quiet_days_after_conversation} days ago"))
    if not blocks:
        return ALLOW
    return CapVerdict(allowed=False, reason="; ".join(r for _, r in blocks),
                      retry_at=max(at for at, _ in blocks), exclude=False)


def no_answer_days(events: Sequence[ContactEvent], tz: ZoneInfo) -> int:
    """Distinct local days with counted calls since the person last answered (an answer resets it)."""
    answers = [e.at for e in events if e.answered]
    since = max(answers) if answers else None
    return len({e.at.astimezone(tz).date() for e in events
                if e.counted and not e.answered and (since is None or e.at > since)})


def policy_for(settings: CallSettings) -> PersonPolicy:
    """The person policy of a batch's settings, tightened by its preset."""
    return preset_person_policy(settings.preset, settings.person_policy.to_policy())


def _exclude(reason: str) -> CapVerdict:
    return CapVerdict(allowed=False, reason=reason, retry_at=None, exclude=True)
