"""Registering an outbound call as an attempt of a contact's opportunity (DESIGN.md §8).

Pure: given the contact's opportunities and the call's facts, which opportunity changes and how.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ACTIVE_STATUSES = ("pending", "assigned", "contacted")
MAX_ATTEMPTS = 5


def attempt_color(*, finished: bool, answered: bool, rejected: bool) -> str:
    """``green`` answered/completed, ``red`` the person turned it down, ``orange`` anything else (a call
    still ringing, no answer, busy, voicemail, failed)."""
    if not finished:
        return "orange"
    if rejected:
        return "red"
    return "green" if answered else "orange"


def active_opportunity(opportunities: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest active opportunity whose first call is not completed."""
    active = [o for o in opportunities
              if o.get("status") in ACTIVE_STATUSES and not o.get("first_call_completed")]
    return max(active, key=lambda o: (o.get("created_ms", 0), str(o.get("_id", "")))) if active else None


def register_attempt(opportunity: Mapping[str, Any], *, call_id: str, color: str, at_ms: int,
                     notes: str = "") -> dict[str, Any] | None:
    """The opportunity with this call recorded, or None when nothing changes (five attempts used).

    The same call id updates its attempt instead of adding one."""
    opp = dict(opportunity)
    attempts: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (opp.get("first_call_attempts") or {}).items()}
    number = next((int(k) for k, v in attempts.items() if v.get("call_id") == call_id), None)
    if number is None:
        used = [int(k) for k in attempts if k.isdigit()]
        number = max(used, default=0) + 1
        if number > MAX_ATTEMPTS:
            return None
        attempts[str(number)] = {"call_id": call_id}
    entry = attempts[str(number)]
    entry.update(status=color, attempted_at_ms=at_ms)
    if notes or "notes" not in entry:
        entry["notes"] = notes
    opp["first_call_attempts"] = attempts
    if color == "green":
        opp["first_call_completed"] = True
        opp["first_call_successful_attempt"] = number
    opp["last_contact_attempt_ms"] = max(int(a.get("attempted_at_ms", 0)) for a in attempts.values())
    if opp.get("status") == "pending":
        opp["status"] = "contacted"
    return opp
