"""The dialing controls as the call actor calls them: each function is one step of the dial path.

Kept out of the actor so its edits stay a line per hook; everything that decides is in the pure modules
beside this one (``caller_ids``, ``breaker``, ``rate``, ``predial``, ``ab``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio

from speechai.dialing import ab, caller_ids, instance_state, predial
from speechai.dialing.breaker import Breakers, counts_for_breaker, failure_kind, resumed_by_operator
from speechai.dialing.rate import DialRateLimiter
from speechai.domain.decision import NextStep
from speechai.domain.outcomes import OutcomeClass
from speechai.domain.phones import next_usable_phone
from speechai.domain.policy_types import Preset
from speechai.domain.segments import rule_named
from speechai.domain.settings import CallSettings
from speechai.domain.windows import fmt_local, local_date, next_dialable, next_local_midnight
from speechai.integrations.outbox import pause_batch as outbox_pause
from speechai.store import accounts as account_store
from speechai.store.jobs import LostOwnership, checkpoint, dial_pending, transition
from speechai.store.models import Account, Attempt, Batch, CallerId, Job, JobState, epoch_ms

RESTORE_WAIT_S = 10.0  # real seconds to wait for storm jobs still in flight before giving up restoring them
PREDIAL_CONCURRENCY = 64  # pre-dial requests in flight per instance


@dataclass(frozen=True)
class Stop:
    """Do not dial now: the job is released to ``state`` with ``reason``, next try ``at``."""

    state: JobState
    reason: str
    at: datetime | None = None


async def pause_batch(rt: Any, batch_id: str, reason: str, **facts: Any) -> bool:
    """Pause an active batch with ``reason`` (an operator resumes it), recording ``batch.paused`` in the
    same update; True if this call paused it."""
    batch = await rt.batches.get(batch_id)
    account_id = batch.account_id if batch is not None else ""
    paused = await outbox_pause(rt.outbox, batch_id, account_id, reason, epoch_ms(rt.clock.now()))
    rt.forget_cached()
    if paused:
        rt.log.error("batch_paused", batch_id=batch_id, reason=reason, **facts)
    return paused


# --- caller-ID pool and the Chile rule ------------------------------------------------------------------


def pool_of(batch: Batch, account: Account | None) -> list[CallerId]:
    return list(batch.caller_ids or (account.caller_ids if account is not None else []))


def batch_violations(rt: Any, batch: Batch, account: Account | None) -> list[caller_ids.Violation]:
    return caller_ids.batch_caller_id_violations(
        use_case=batch.use_case, pool=[e.number for e in pool_of(batch, account)], from_number=batch.from_number,
        default_from_number=rt.from_number, preset=Preset(batch.call_settings.preset).value)


async def caller_id_rule(rt: Any, batch: Batch, account: Account | None) -> Stop | None:
    """A batch whose caller ids break the Chile rule is paused, naming the rule and the numbers, unless
    the account carries an explicit override (logged once per batch at every start of the instance)."""
    try:
        violations = batch_violations(rt, batch, account)
    except ValueError as exc:
        reason = f"caller-id rule: {exc}"
        await pause_batch(rt, batch.id, reason)
        return Stop(JobState.PENDING, reason, rt.clock.now())
    if not violations:
        return None
    text = "; ".join(v.message for v in violations)
    if account is not None and account.chile_rule_override:
        logged = instance_state(rt, "chile_overrides_logged", set)
        if batch.id not in logged:
            logged.add(batch.id)
            rt.log.warning("chile_rule_overridden", account_id=account.id, batch_id=batch.id,
                           override=account.chile_rule_override, violations=text)
        return None
    await pause_batch(rt, batch.id, text, rule=",".join(v.rule for v in violations))
    return Stop(JobState.PENDING, f"batch paused: {text}", rt.clock.now())


async def hold_caller_id(rt: Any, batch: Batch, account: Account | None, job: Job, settings: CallSettings,
                         admitted: Any) -> tuple[Any, str | None] | Stop:
    """After the admission: take today's use of the pool's best number for this person; the counter goes
    into the admission's daily keys, so a dial that never happens gives it back. Without a pool: None
    (the batch's or the default number). When every number is rested or capped the admission is returned
    and the job waits for the next local day."""
    pool = pool_of(batch, account)
    if not pool:
        return admitted, None
    now = rt.clock.now()
    cap = batch.caller_id_daily_cap or (account.caller_id_daily_cap if account is not None else None)
    local = caller_ids.person_keys([p.number for p in job.phones], job.variables.get("region"))
    choice = await caller_ids.choose(job.account_id, pool, day=local_date(settings, now).isoformat(), cap=cap,
                                     local=local)
    if choice is not None:
        return dataclasses.replace(admitted, daily_keys=(*admitted.daily_keys, choice.key)), choice.number
    await refund(job.account_id, admitted)
    at = next_dialable(settings, next_local_midnight(settings.tz, now))
    rt.log.warning("caller_ids_exhausted", batch_id=batch.id, pool=len(pool), cap=cap)
    return Stop(JobState.RETRY, f"every caller id of the pool is rested or at its daily cap ({cap}); next try "
                                f"{fmt_local(settings, at)}", at)


async def refund(account_id: str, admitted: Any) -> None:
    with anyio.CancelScope(shield=True):
        await account_store.settle(account_id, reserved_cents=admitted.reserved_cents,
                                   reserved_ms=admitted.reserved_ms, delta_cents=admitted.reserved_cents,
                                   delta_ms=admitted.reserved_ms, cost_cents=0.0)
        for key in admitted.daily_keys:
            await account_store.give_back_daily(key)


async def caller_id_refused(rt: Any, job: Job, attempt: Attempt, settings: CallSettings, reason: str) -> None:
    """The carrier marked our number as spam or blocked it: rest it for the rest of the local day."""
    if not attempt.from_number:
        return
    day = local_date(settings, rt.clock.now()).isoformat()
    if await caller_ids.rest(job.account_id, attempt.from_number, day, reason):
        rt.log.warning("caller_id_rested", account_id=job.account_id, from_number=attempt.from_number, day=day,
                       reason=reason, batch_id=job.batch_id)


# --- the attempt: from-number and agent (A/B arm) -------------------------------------------------------


def prepare_attempt(rt: Any, batch: Batch, job: Job, attempt: Attempt, from_number: str | None) -> None:
    """Fix the attempt's from-number and agent before its first create-call (a resumed attempt keeps
    what it had); the A/B arm is assigned once per person and recorded on the job. The agent: the job's
    segment's (when its rule names one), else the A/B arm, else the batch's, else the configured one."""
    segment = rule_named(batch.segments, job.segment)
    if batch.agent_split:
        arms = [a.agent_id for a in batch.agent_split]
        if job.arm not in arms:
            job.arm = ab.assign_arm(job.account_id, job.person_key, batch.agent_split)
    attempt.from_number = attempt.from_number or from_number or batch.from_number or rt.from_number
    attempt.agent_id = (attempt.agent_id or (segment.agent_id if segment is not None else None)
                        or (job.arm if batch.agent_split else None) or batch.agent_id or rt.agent_id)


async def before_create(rt: Any, account: Account | None) -> None:
    """Right before create-call: wait for a token of the account's dial rate."""
    if account is None or not account.max_dials_per_second:
        return
    limiter = instance_state(rt, "dial_rate", lambda: DialRateLimiter(rt.clock.now, rt.clock.real_seconds))
    await limiter.acquire(account.id, account.max_dials_per_second)


# --- pre-dial eligibility -----------------------------------------------------------------------------


async def predial_gate(rt: Any, account: Account | None, job: Job, settings: CallSettings) -> Stop | None:
    """Ask the creditor's hook (when the account has one) whether to dial; recorded on the job."""
    if account is None or not account.predial_url:
        return None
    index = next_usable_phone(job.phones, job.phone_index - 1)
    phone = job.phones[index].number if index is not None else ""
    limiter = instance_state(rt, "predial_limiter", lambda: anyio.CapacityLimiter(PREDIAL_CONCURRENCY))
    async with limiter:
        decision = await predial.check(account, job, phone, wall_now=rt.wall.now())
    job.predial_action, job.predial_reason = decision.action, decision.reason
    rt.log.info("predial_answer", action=decision.action, reason=decision.reason, error=decision.error)
    now = rt.clock.now()
    if decision.action == "exclude":
        return Stop(JobState.EXCLUDED, f"excluded by the creditor before dialing: {decision.reason or 'no reason'}")
    if decision.action == "skip":
        at = next_dialable(settings, now + timedelta(minutes=max(1, account.predial_skip_delay_min)))
        why = decision.reason if decision.error else f"creditor said skip: {decision.reason or 'no reason'}"
        return Stop(JobState.RETRY, f"{why}; next try {fmt_local(settings, at)}", at)
    return None


# --- failure circuit breaker ----------------------------------------------------------------------------


async def after_attempt(rt: Any, job: Job, attempt: Attempt, step: NextStep) -> NextStep:
    """Feed the batch's breaker; while it is tripped a failure is the route's, not the phone's: the phone
    is not marked bad and the person is retried. The attempt that trips it pauses the batch and restores
    the phones the storm marked bad."""
    if not counts_for_breaker(attempt):
        return step
    breaker = instance_state(rt, "breakers", Breakers).of(job.batch_id)
    batch = await rt.batches.get(job.batch_id)
    if breaker.tripped and breaker.pause_written and batch is not None \
            and resumed_by_operator(batch.status, batch.status_reason):
        # A cached copy may predate the pause: only the stored batch says an operator resumed it.
        stored = await Batch.get(job.batch_id)
        if stored is not None and resumed_by_operator(stored.status, stored.status_reason):
            breaker.reset()
    kind = failure_kind(attempt)
    marked = job.phones[job.phone_index].number if step.mark_phone_bad else None
    was_tripped = breaker.tripped
    trip = breaker.record(rt.clock.now(), kind, str(job.id), marked)
    if trip is not None:
        reason = trip.reason(breaker.rules)
        await pause_batch(rt, job.batch_id, reason, attempts=trip.attempts, failures=trip.failures,
                          consecutive_4xx=trip.consecutive_4xx, **trip.by_kind)
        breaker.pause_written = True
        mine = {phone for jid, phone in trip.marked_bad if jid == str(job.id)}
        _restore_phones(job, mine)
        others: dict[str, set[str]] = {}
        for jid, phone in trip.marked_bad:
            if jid != str(job.id):
                others.setdefault(jid, set()).add(phone)
        restored, left = await restore_storm(rt, others)
        rt.log.warning("breaker_phones_restored", batch_id=job.batch_id, jobs=restored, not_restored=left)
    if kind is None or not (trip is not None or was_tripped):
        return step
    settings = batch.call_settings.effective() if batch is not None else CallSettings()
    now = rt.clock.now()
    at = next_dialable(settings, now + timedelta(minutes=settings.retry_delay_min.provider_error))
    what = attempt.disconnection_reason or kind
    return NextStep("retry", at, False, f"route failure during a failure storm ({what}); phone kept; retry at "
                                        f"{fmt_local(settings, at)}")


async def after_not_placed(rt: Any, job: Job, attempt: Attempt) -> None:
    """A create-call that failed with a provider error (5xx, timeouts) and was not placed: the breaker hears
    of it too (no phone was marked bad, so there is nothing to rewrite)."""
    if attempt.outcome == OutcomeClass.PROVIDER_ERROR.value:
        await after_attempt(rt, job, attempt, NextStep("retry", None, False, attempt.error or ""))


def _restore_phones(job: Job, numbers: set[str]) -> bool:
    changed = False
    for phone in job.phones:
        if phone.number in numbers and phone.bad:
            phone.bad, phone.bad_reason = False, None
            changed = True
    return changed


async def restore_storm(rt: Any, jobs: dict[str, set[str]]) -> tuple[int, list[str]]:
    """Un-mark the phones the storm marked bad on other jobs; a job failed for "all phones bad" waits
    again. A job in flight is retried until its actor lets go (at most ``RESTORE_WAIT_S``)."""
    from bson import ObjectId

    restored, pending = 0, dict(jobs)
    with anyio.move_on_after(RESTORE_WAIT_S):
        while pending:
            for jid in list(pending):
                job = await Job.get(ObjectId(jid) if ObjectId.is_valid(jid) else jid)
                if job is None:
                    del pending[jid]
                    continue
                if job.state == JobState.IN_FLIGHT and not dial_pending(job):
                    continue
                if _restore_phones(job, pending[jid]):
                    if dial_pending(job):  # held by an actor that has not dialed: it lets go
                        transition(job, JobState.RETRY, "phones restored after a failure storm", rt.clock.now())
                        job.lease, job.next_try_at = None, rt.clock.now()
                    if job.state == JobState.FAILED:
                        now = rt.clock.now()
                        transition(job, JobState.RETRY, "phones restored after a failure storm", now)
                        job.next_try_at = now
                    try:
                        await checkpoint(job)
                    except LostOwnership:
                        continue  # written meanwhile: read it again
                    restored += 1
                del pending[jid]
            if pending:
                await anyio.sleep(0.2)
    return restored, sorted(pending)
