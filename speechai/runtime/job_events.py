"""The integration events a call actor writes into its job's checkpoints (``domain.events``), built from
the job and attempt it holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from speechai.domain.events import OutboxItem, call_event, job_event, promise_event
from speechai.store.models import Attempt, Job, JobState, epoch_ms

_ATTEMPT_FIELDS = ("attempt_id", "phone", "call_id", "placed", "outcome", "success", "disconnection_reason",
                   "call_status", "duration_ms", "cost_cents", "summary", "sentiment", "in_voicemail", "collected",
                   "recording_url", "public_log_url", "from_number", "agent_id", "error")
_ATTEMPT_TIMES = ("created_at", "placed_at", "started_at", "ended_at")


def job_facts(job: Job) -> dict[str, Any]:
    return {"job_id": str(job.id), "batch_id": job.batch_id, "account_id": job.account_id,
            "person_key": job.person_key, "name": job.name, "national_id": job.national_id,
            "state": job.state.value, "attempts_counted": job.attempts_counted}


def attempt_facts(attempt: Attempt) -> dict[str, Any]:
    facts: dict[str, Any] = {k: getattr(attempt, k) for k in _ATTEMPT_FIELDS}
    for name in _ATTEMPT_TIMES:
        at: datetime | None = getattr(attempt, name)
        facts[f"{name}_ms"] = epoch_ms(at) if at is not None else None
    return facts


def call_created(job: Job, attempt: Attempt, now: datetime) -> list[OutboxItem]:
    return [call_event("call.created", epoch_ms(now), account_id=job.account_id, job=job_facts(job),
                       attempt=attempt_facts(attempt))]


def call_finished(job: Job, attempt: Attempt, now: datetime) -> list[OutboxItem]:
    """``call.finished`` for a call the provider placed, and ``promise_to_pay`` if the person promised."""
    if not attempt.call_id:
        return []
    facts, at_ms = attempt_facts(attempt), epoch_ms(now)
    events = [call_event("call.finished", at_ms, account_id=job.account_id, job=job_facts(job), attempt=facts)]
    if (promise := promise_event(at_ms, account_id=job.account_id, job=job_facts(job), attempt=facts)) is not None:
        events.append(promise)
    return events


def state_reached(job: Job, state: JobState, reason: str, now: datetime) -> list[OutboxItem]:
    event = job_event(state.value, epoch_ms(now), account_id=job.account_id, job=job_facts(job), reason=reason,
                      transition_no=len(job.history))
    return [event] if event is not None else []
