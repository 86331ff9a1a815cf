"""Outcome classification of a finished Retell call (DESIGN.md section 3).

Only the provider's facts decide: ``disconnection_reason``, ``call_analysis.in_voicemail`` and
``call_analysis.call_successful`` (or the use case's own success rule). Voicemail, IVR, no answer,
busy and declined are never a success; an unknown reason is a provider error, never a success.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from enum import StrEnum
from typing import Any


class OutcomeClass(StrEnum):
    CONVERSATION = "conversation"
    VOICEMAIL = "voicemail"
    NO_ANSWER = "no_answer"
    BAD_NUMBER = "bad_number"
    CALLER_ID = "caller_id"  # our from-number or route was refused: a fact about us, not the person's phone
    CAPACITY = "capacity"
    ACCOUNT = "account"
    PROVIDER_ERROR = "provider_error"


@dataclass(frozen=True)
class Classification:
    outcome: OutcomeClass
    success: bool  # conversation judged successful
    counts: bool  # counts as an attempt against the person
    answered: bool  # a human conversation happened (for "no answer on N distinct days")
    reason: str  # the disconnection_reason, or "http_429" etc.
    do_not_call: bool = False  # the person asked not to be called again


CONVERSATION_REASONS = frozenset({
    "user_hangup", "agent_hangup", "call_transfer", "max_duration_reached", "inactivity",
    "user_requested_dnc", "user_requested_callback", "scam_detected", "manual_stopped", "call_take_over",
})
VOICEMAIL_REASONS = frozenset({"voicemail_reached", "ivr_reached"})
NO_ANSWER_REASONS = frozenset({"dial_no_answer", "dial_busy", "user_declined"})
BAD_NUMBER_REASONS = frozenset({"invalid_destination", "dial_failed", "telephony_provider_permission_denied"})
# The carrier flagged or blocked our caller id or route: never marks the person's phone bad (DESIGN.md §3).
CALLER_ID_REASONS = frozenset({"marked_as_spam", "network_blocked"})
CAPACITY_REASONS = frozenset({"concurrency_limit_reached", "no_concurrency_fallback"})
ACCOUNT_REASONS = frozenset({"no_valid_payment", "credit_exhausted", "budget_reached"})
PROVIDER_ERROR_REASONS = frozenset({"telephony_provider_unavailable", "sip_routing_error", "registered_call_timeout"})

# Keys an agent may use to hand back a requested callback time (dynamic variables or custom analysis).
CALLBACK_KEYS = ("callback_at", "callback_time", "callback_datetime", "requested_callback_at",
                 "fecha_hora_rellamada", "rellamar_en")


def outcome_of_reason(reason: str) -> OutcomeClass:
    """The outcome class of a disconnection reason alone (before the voicemail flag is considered)."""
    if reason in CONVERSATION_REASONS or reason.startswith("transfer_"):
        return OutcomeClass.CONVERSATION
    for reasons, outcome in ((VOICEMAIL_REASONS, OutcomeClass.VOICEMAIL),
                             (NO_ANSWER_REASONS, OutcomeClass.NO_ANSWER),
                             (BAD_NUMBER_REASONS, OutcomeClass.BAD_NUMBER),
                             (CALLER_ID_REASONS, OutcomeClass.CALLER_ID),
                             (CAPACITY_REASONS, OutcomeClass.CAPACITY),
                             (ACCOUNT_REASONS, OutcomeClass.ACCOUNT)):
        if reason in reasons:
            return outcome
    return OutcomeClass.PROVIDER_ERROR  # PROVIDER_ERROR_REASONS, error_*, and anything unknown


def classify_call(call: Mapping[str, Any], *,
                  success_rule: Callable[[Mapping[str, Any]], bool] | None = None) -> Classification:
    """Classify a finished call object (``call_status`` ended, not_connected or error)."""
    reason = str(call.get("disconnection_reason") or f"status_{call.get('call_status') or 'unknown'}")
    analysis = call.get("call_analysis") or {}
    outcome = outcome_of_reason(reason)
    # The analysis flag wins over a conversation-looking reason: the "conversation" was a machine.
    if analysis.get("in_voicemail") is True and outcome in (OutcomeClass.CONVERSATION, OutcomeClass.VOICEMAIL):
        outcome = OutcomeClass.VOICEMAIL
    success = False
    if outcome == OutcomeClass.CONVERSATION:
        success = analysis.get("call_successful") is True or bool(success_rule and success_rule(call))
    return Classification(
        outcome=outcome,
        success=success,
        # Capacity and account refusals never reached the person; a bad number reached no one's phone; a
        # blocked caller id was stopped before the person's phone rang.
        counts=outcome not in (OutcomeClass.CAPACITY, OutcomeClass.ACCOUNT, OutcomeClass.BAD_NUMBER,
                               OutcomeClass.CALLER_ID),
        answered=outcome == OutcomeClass.CONVERSATION,
        reason=reason,
        do_not_call=outcome == OutcomeClass.CONVERSATION and reason == "user_requested_dnc",
    )


def classify_http_status(status: int) -> Classification | None:
    """create-call refusals that are outcomes, not bugs: 402 (payment) and 429 (throttled)."""
    if status == 402:
        return Classification(OutcomeClass.ACCOUNT, success=False, counts=False, answered=False,
                              reason="http_402")
    if status == 429:
        return Classification(OutcomeClass.CAPACITY, success=False, counts=False, answered=False,
                              reason="http_429")
    return None


def callback_requested_at(call: Mapping[str, Any], *, local_tz: tzinfo | None = None) -> datetime | None:
    """A callback time the agent collected, as aware UTC; None if absent or unreadable.

    Looks in ``collected_dynamic_variables`` then ``call_analysis.custom_analysis_data``. Values are
    ISO 8601 (a date alone means that local midnight) or epoch milliseconds. A value without an offset
    is read in ``local_tz`` (pass the batch's timezone), else as UTC.
    """
    analysis = call.get("call_analysis") or {}
    for source in (call.get("collected_dynamic_variables"), analysis.get("custom_analysis_data")):
        if not isinstance(source, Mapping):
            continue
        for key in CALLBACK_KEYS:
            at = _parse_instant(source.get(key), local_tz or UTC)
            if at is not None:
                return at
    return None


def _parse_instant(value: object, local_tz: tzinfo) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        try:
            at = datetime.combine(date.fromisoformat(text), time(0))
        except ValueError:
            return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=local_tz)
    return at.astimezone(UTC)
