"""The CRM subscriber: an outbound call of a contact with an active opportunity becomes one of that
opportunity's first-call attempts (DESIGN.md §8; rules in ``domain.crm_rules``).

It runs as a built-in subscription of the outbox (``internal:crm``), so it survives crashes and a
failure here is retried later without ever touching the call's own records.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from pymongo.errors import DuplicateKeyError

from speechai.domain.crm_rules import active_opportunity, attempt_color, register_attempt
from speechai.store.outbox_models import CRM_SUBSCRIPTION, Contact, Opportunity, Subscription, contact_id

CRM_EVENTS = ["call.created", "call.finished"]
CONFLICT_RETRIES = 5
REJECTED_REASONS = {"user_requested_dnc", "user_declined"}
REJECTED_FLAGS = ("rejected", "declined", "not_interested", "rechazado", "no_interesado")


def crm_subscription_id(account_id: str) -> str:
    return f"{CRM_SUBSCRIPTION}:{account_id}"


async def ensure_subscription(account_id: str, now_ms: int) -> None:
    """The account's CRM subscriber, created with its first contact."""
    sid = crm_subscription_id(account_id)
    coll = Subscription.get_pymongo_collection()
    if await coll.find_one({"_id": sid}, {"_id": 1}) is not None:
        return
    with contextlib.suppress(DuplicateKeyError):  # created meanwhile by another request
        await coll.insert_one({"_id": sid, "account_id": account_id, "url": f"internal:{CRM_SUBSCRIPTION}",
                               "events": CRM_EVENTS, "secret": "whsec_" + secrets.token_urlsafe(24),
                               "description": "CRM opportunity attempts",
                               "active": True, "disabled_reason": None, "created_ms": now_ms,
                               "last_success_ms": 0, "failures_in_row": 0})


def _color(event: dict[str, Any]) -> str:
    attempt = event["data"].get("attempt") or {}
    if event["type"] == "call.created":
        return attempt_color(finished=False, answered=False, rejected=False)
    collected = {str(k).lower(): v for k, v in (attempt.get("collected") or {}).items()}
    rejected = attempt.get("disconnection_reason") in REJECTED_REASONS or any(
        str(collected.get(k, "")).strip().lower() in ("1", "true", "yes", "si", "sí") for k in REJECTED_FLAGS)
    return attempt_color(finished=True, answered=attempt.get("outcome") == "conversation", rejected=rejected)


def _notes(event: dict[str, Any]) -> str:
    attempt = event["data"].get("attempt") or {}
    if event["type"] == "call.created":
        return "call placed"
    return str(attempt.get("summary") or attempt.get("disconnection_reason") or attempt.get("outcome") or "")[:2000]


async def register_call(event: dict[str, Any]) -> str:
    """Record the event's call on its contact's active opportunity; what happened, as text."""
    data, attempt = event["data"], event["data"].get("attempt") or {}
    call_id = attempt.get("call_id")
    if not call_id or not data.get("person_key"):
        return "no call id or person"
    cid = contact_id(event["account_id"], data["person_key"])
    if await Contact.get(cid) is None:
        return "not a contact"
    coll = Opportunity.get_pymongo_collection()
    at_ms = int(attempt.get("ended_at_ms") or attempt.get("placed_at_ms") or event["at_ms"])
    for _ in range(CONFLICT_RETRIES):
        opportunities = [o async for o in coll.find({"contact_id": cid})]
        opp = active_opportunity(opportunities)
        if opp is None:
            # the same call already recorded on an opportunity its green attempt completed: update nothing
            return "no active opportunity"
        changed = register_attempt(opp, call_id=str(call_id), color=_color(event), at_ms=at_ms, notes=_notes(event))
        if changed is None:
            return "five attempts already recorded"
        changed["version"] = int(opp.get("version", 0)) + 1
        result = await coll.replace_one({"_id": opp["_id"], "version": opp.get("version", 0)}, changed)
        if result.matched_count:
            return f"attempt recorded on {opp['_id']}"
    raise RuntimeError(f"opportunity of contact {cid} kept changing; retried later")
