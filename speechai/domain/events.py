"""Integration events: what happened, as the outbox records it (DESIGN.md §1; docs/integrations.md).

An event is built in memory from the change that causes it and written inside the same document write
(a job's checkpoint, a batch's or an account's update), so there is never one without the other. Its id
is derived from its cause, so writing or relaying it twice yields one event.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, Field

EVENT_TYPES = ("call.created", "call.finished", "job.done", "job.failed", "promise_to_pay",
               "batch.finished", "batch.paused", "account.suspended")
# Collected variables that carry a payment promise (an amount or a date promised on the call).
PROMISE_AMOUNT_KEYS = ("promised_amount", "monto_prometido", "promise_amount", "payment_amount")
PROMISE_DATE_KEYS = ("promised_payment_date", "fecha_compromiso", "promise_date", "payment_date")
PROMISE_FLAG_KEYS = ("promise_to_pay", "compromiso_pago")
_NO = {"", "0", "false", "no", "none", "null", "n/a"}


class OutboxItem(BaseModel):
    """An event written with its cause, waiting to be (or already) relayed to the outbox collection."""

    id: str
    type: str
    at_ms: int  # business time of the cause, epoch ms (an integer: never a $set datetime)
    account_id: str
    data: dict[str, Any] = Field(default_factory=dict)


def _present(value: Any) -> bool:
    return value is not None and str(value).strip().lower() not in _NO


def promise_of(collected: Mapping[str, Any]) -> dict[str, Any] | None:
    """The payment promise in a call's collected variables, or None: an amount or a date promised, or an
    explicit yes flag."""
    amount = next((collected[k] for k in PROMISE_AMOUNT_KEYS if _present(collected.get(k))), None)
    day = next((collected[k] for k in PROMISE_DATE_KEYS if _present(collected.get(k))), None)
    flagged = any(_present(collected.get(k)) for k in PROMISE_FLAG_KEYS)
    if amount is None and day is None and not flagged:
        return None
    out: dict[str, Any] = {"amount": None, "amount_text": None if amount is None else str(amount),
                           "payment_date": None if day is None else str(day)}
    if amount is not None:
        try:
            out["amount"] = str(Decimal(str(amount).replace(",", "").replace("$", "").strip()))
        except InvalidOperation:
            pass  # kept as text only
    return out


def call_event(kind: str, at_ms: int, *, account_id: str, job: Mapping[str, Any],
               attempt: Mapping[str, Any]) -> OutboxItem:
    """``call.created`` (the provider took the call) or ``call.finished`` (its result is recorded)."""
    return OutboxItem(id=f"{attempt['attempt_id']}:{kind}", type=kind, at_ms=at_ms, account_id=account_id,
                      data={**job, "attempt": dict(attempt)})


def promise_event(at_ms: int, *, account_id: str, job: Mapping[str, Any], attempt: Mapping[str, Any]
                  ) -> OutboxItem | None:
    promise = promise_of(attempt.get("collected") or {})
    if promise is None:
        return None
    return OutboxItem(id=f"{attempt['attempt_id']}:promise_to_pay", type="promise_to_pay", at_ms=at_ms,
                      account_id=account_id,
                      data={**job, "promise": promise, "call_id": attempt.get("call_id"),
                            "phone": attempt.get("phone"), "collected": dict(attempt.get("collected") or {})})


def job_event(state: str, at_ms: int, *, account_id: str, job: Mapping[str, Any], reason: str,
              transition_no: int) -> OutboxItem | None:
    """``job.done``/``job.failed`` when a job reaches that state; keyed by the transition, so a job sent
    back by an operator and failing again is a second event."""
    if state not in ("done", "failed"):
        return None
    kind = f"job.{state}"
    return OutboxItem(id=f"{job['job_id']}:{kind}:{transition_no}", type=kind, at_ms=at_ms, account_id=account_id,
                      data={**job, "state": state, "reason": reason})


def batch_event(kind: str, at_ms: int, *, account_id: str, batch_id: str, reason: str, seq: str) -> OutboxItem:
    return OutboxItem(id=f"batch:{batch_id}:{kind}:{seq}", type=kind, at_ms=at_ms, account_id=account_id,
                      data={"batch_id": batch_id, "account_id": account_id, "reason": reason})


def account_event(at_ms: int, *, account_id: str, reason: str) -> OutboxItem:
    return OutboxItem(id=f"account:{account_id}:suspended:{at_ms}", type="account.suspended", at_ms=at_ms,
                      account_id=account_id, data={"account_id": account_id, "reason": reason})
