"""A call actor owns one leased job's attempt lifecycle:
gate → open attempt (checkpoint) → create-call (checkpoint call id) → track → classify → decide → release.

Each step is re-entrant: a restarted actor (after a crash or a takeover) reads the job and resumes
from its last checkpoint, so the dial happens at most once per attempt id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from pymongo.errors import ConnectionFailure

from actors.mailbox import Mailbox
from actors.ticket import Ticket
from speechai.dialing import hooks as dialing
from speechai.domain.credits import settle
from speechai.domain.decision import NextStep, decide_next, step_for_caps
from speechai.domain.events import OutboxItem, account_event
from speechai.domain.outcomes import (
    Classification,
    OutcomeClass,
    callback_requested_at,
    classify_call,
    classify_http_status,
)
from speechai.domain.phones import next_usable_phone
from speechai.domain.settings import CallSettings
from speechai.domain.windows import SCAN_DAYS, is_dialable_in, next_dialable, next_dialable_in
from speechai.domain.zones import attempt_zones, dial_zones, next_open_in, phone_zones, push_into_zones
from speechai.retell import errors as rerr
from speechai.runtime import job_events
from speechai.runtime.context import Runtime
from speechai.runtime.faults import crash_point
from speechai.runtime.gate import (
    Admission,
    Refusal,
    add_do_not_call,
    admit,
    gate_person,
    is_do_not_call,
    person_view,
)
from speechai.runtime.segment_settings import settings_for, variables_for
from speechai.store import accounts
from speechai.store.jobs import LostOwnership, checkpoint, save_call_payload, transition
from speechai.store.models import (
    Account,
    Attempt,
    Batch,
    BatchStatus,
    CallRecord,
    Job,
    JobState,
    Plan,
    epoch_ms,
    from_epoch_ms,
)

FINAL_CALL_STATUSES = {"ended", "not_connected", "error"}
# Real seconds a job claimed ahead of a line waits for one before its checks are made again.
LINE_WAIT_S = 10.0
TRANSIENT = (rerr.ServerError, rerr.ProviderTimeout, rerr.MalformedResponse)


@dataclass(frozen=True)
class CallEvent:
    """A provider webhook routed to the actor holding the call's job."""

    event: str
    call: dict[str, Any]


def _ms_to_dt(ms: Any) -> datetime | None:
    return from_epoch_ms(ms) if isinstance(ms, int | float) and ms > 0 else None


_STATUS_RANK = {"registered": 0, "ongoing": 1, "ended": 2, "not_connected": 2, "error": 2}


def _later(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The more advanced of two views of one call: a late call_started never undoes a call_ended, and
    an ended call without analysis never replaces one with it."""
    rank_old = _STATUS_RANK.get(str(current.get("call_status")), 0)
    rank_new = _STATUS_RANK.get(str(new.get("call_status")), 0)
    if rank_new < rank_old or (rank_new == rank_old and current.get("call_analysis") is not None
                               and new.get("call_analysis") is None):
        return current
    return new


def _is_open(attempt: Attempt | None) -> bool:
    return attempt is not None and attempt.outcome is None and attempt.placed is not False


def _rings_inside(settings: CallSettings, now: datetime, zones: tuple[str, ...]) -> bool:
    """Checked right before create-call: the window is open now and still open when the phone may
    still be ringing, so a dial sent in the window's last moments never rings after it closed.
    ``zones``: the debtor's possible zones (the window must hold in each)."""
    return is_dialable_in(settings, now, zones) and is_dialable_in(
        settings, now + timedelta(seconds=settings.ring_timeout_s), zones)


def has_open_attempt(job: Job) -> bool:
    """The job's last attempt may have reached the provider and is not finished."""
    return _is_open(job.current_attempt)


class CallActor:
    """``job`` is the document as the claim read it back (saves a read); ``on_release`` hears of every
    release after its checkpoint, so the scheduler's due index follows this instance's own writes."""

    def __init__(self, rt: Runtime, job_id: Any, *, job: Job | None = None,
                 on_release: Callable[[Job], None] | None = None, slot_held: bool = True,
                 on_call_ended: Callable[[], None] | None = None, ticket: Ticket[str] | None = None,
                 on_dialed: Callable[[], None] | None = None, dial_key: str | None = None) -> None:
        self.rt = rt
        self.job_id = job_id
        self.mailbox: Mailbox[CallEvent] = Mailbox(capacity=16)
        self.log = rt.log.bind(job_id=str(job_id))
        self.job: Job | None = None
        self._claimed = job
        self._on_release = on_release
        self._slot_held = slot_held  # one of the account's concurrency slots is held for this actor
        # told once, when the provider reports the call over: its line is free for the next dial while
        # this actor still waits for the analysis and writes the result
        self._on_call_ended = on_call_ended
        # claimed ahead of a free line: the scheduler grants one through this when a call ends
        self._ticket = ticket
        self._on_dialed = on_dialed  # told once the create-call is behind it (placed or not)
        self._dial_key = dial_key  # what this actor holds ``rt.dialing`` under while it has to dial
        self._from_number: str | None = None  # the caller id taken from the pool for this dial
        self._settings: CallSettings | None = None  # the batch's, once read: next tries keep the debtor's time

    async def run(self) -> None:
        self.rt.actors[str(self.job_id)] = self.mailbox.ref
        try:
            await self._run()
        except LostOwnership as exc:
            self.log.warning("job_taken_over", error=str(exc))
        finally:
            if self.rt.actors.get(str(self.job_id)) is self.mailbox.ref:  # a newer actor may hold the job now
                del self.rt.actors[str(self.job_id)]

    async def _run(self) -> None:
        # A restarted actor (after a crash of the previous one) reads the job fresh.
        job, self._claimed = self._claimed or await Job.get(self.job_id), None
        if job is None or job.state != JobState.IN_FLIGHT or job.lease is None \
                or job.lease.owner != self.rt.instance_id:
            return  # released or taken over meanwhile: nothing of ours to do
        self.job = job
        await self._relay_leftovers()
        batch = await self.rt.batches.get(job.batch_id)
        if batch is None:
            await self._release(JobState.FAILED, f"batch {job.batch_id} no longer exists", None)
            return
        settings = self._settings = settings_for(batch, job)  # the batch's, with the job's segment overrides
        attempt = job.current_attempt
        resumed = _is_open(attempt)  # a previous owner may have sent its create-call already
        if not resumed:
            ready = await self._ready(batch, settings)
            if ready is None:
                return
            batch, settings = ready
            admission = await self._take(batch, settings)
            if admission is None:
                return
            try:
                attempt = await self._open_attempt(admission)
            except LostOwnership:  # changed by an operator or another writer before the dial: let go
                await dialing.refund(job.account_id, admission)
                raise
        assert attempt is not None
        self.log = self.log.bind(attempt_id=attempt.attempt_id)
        placed: dict[str, Any] | None = None
        if attempt.call_id is None:
            placed = await self._place(batch, settings, attempt, resumed=resumed)
            if placed is None:
                return
        self._dial_over()
        call = await self._track(attempt, settings, placed)
        await self._finish(attempt, settings, call)

    # --- gate -------------------------------------------------------------------------------------

    async def _ready(self, batch: Batch, settings: CallSettings) -> tuple[Batch, CallSettings] | None:
        """The checks, then (for a job claimed ahead of a free line) the wait for a line: a freed line
        then costs only the takes, the write-ahead and the create-call. An operator's change recalls the
        ticket: what it may have changed (batch, account, do-not-call list) is looked at again; after
        ``LINE_WAIT_S`` real seconds without a line every check is made again, so nothing read is older
        than that. None: not dialing (recorded)."""
        checked = False
        while True:
            if not checked and not await self._check(batch, settings):
                return None
            if self._ticket is None:
                return batch, settings
            begun = anyio.current_time()
            granted = await self._ticket.wait(LINE_WAIT_S)
            current = await self._current(granted)
            if current is None:
                return None
            batch, settings = current
            if granted:
                self._slot_held = True
                return batch, settings
            checked = anyio.current_time() - begun < LINE_WAIT_S  # recalled early: the rest still holds

    async def _current(self, granted: bool) -> tuple[Batch, CallSettings] | None:
        """After a wait for a line: the batch and account as they are now (from the cache), and, while no
        line is held, the job's version: a write by someone else (a person marked paid) makes this actor
        let go. None: not dialing (recorded, or nothing of ours left)."""
        job = self._job
        if not granted:
            await self.rt.give_way()
            stored = await Job.get(job.id)
            if stored is None or stored.version != job.version:
                self.log.info("job_changed_while_waiting_for_a_line")
                return None
            if await is_do_not_call(job):  # listed meanwhile (through this instance: it recalls at once)
                await self._release(JobState.EXCLUDED, "on the do-not-call list", None)
                return None
        batch = await self.rt.batches.get(job.batch_id)
        if batch is None:
            await self._release(JobState.FAILED, f"batch {job.batch_id} no longer exists", None)
            return None
        if batch.status != BatchStatus.ACTIVE:  # paused while it waited: never dialed
            await self._release(JobState.PENDING, f"batch is {batch.status.value}", self.rt.clock.now())
            return None
        account = await self.rt.accounts.get(job.account_id)
        if account is not None and account.suspended_reason:
            await self._release(JobState.SUSPENDED, f"account suspended: {account.suspended_reason}", None)
            return None
        self._settings = settings_for(batch, job)
        return batch, self._settings

    async def _check(self, batch: Batch, settings: CallSettings) -> bool:
        """Re-check, right before dialing, everything the scheduler checked when it picked the job, and
        the person's history and do-not-call entries. False: not dialing (recorded)."""
        if not self._slot_held:  # claimed ahead of a line: the reads wait for those dialing now
            await self.rt.give_way()
        job, now = self._job, self.rt.clock.now()
        if batch.status != BatchStatus.ACTIVE:
            await self._release(JobState.PENDING, f"batch is {batch.status.value}", now)
            return False
        if not is_dialable_in(settings, now, zones := dial_zones(job.phones, job.phone_index, settings)):
            if (at := next_open_in(settings, now, zones)) is None:
                await self._release(JobState.FAILED, f"allowed hours never hold in all of {', '.join(zones)} "
                                                     f"at once within {SCAN_DAYS} days", None)
                return False
            await self._release(JobState.RETRY, f"outside allowed hours; next window {at.isoformat()} "
                                                f"({', '.join(zones)})", at)
            return False
        account = await self.rt.accounts.get(job.account_id)
        if account is not None and account.suspended_reason:
            await self._release(JobState.SUSPENDED, f"account suspended: {account.suspended_reason}", None)
            return False
        if (stop := await dialing.caller_id_rule(self.rt, batch, account)) is not None:  # Chile 600/809
            await self._release(stop.state, stop.reason, stop.at)
            return False
        if not self._slot_held and self._ticket is None and account is not None:
            at = next_dialable(settings, now + timedelta(minutes=max(1, settings.retry_delay_min.capacity)))
            await self._release(JobState.RETRY, f"account at its limit of {account.max_concurrent_calls} "
                                                f"concurrent calls; next try {at.isoformat()}", at)
            return False
        person = await person_view(job, now)
        if person.busy:
            at = next_dialable(settings, now + timedelta(minutes=max(1, settings.retry_delay_min.capacity)))
            await self._release(JobState.RETRY, f"another call to this person is in progress; next try "
                                                f"{at.isoformat()}", at)
            return False
        if (refused := step_for_caps(await gate_person(job, settings, now, person), settings, now)) is not None:
            state = JobState.EXCLUDED if refused.action == "excluded" else JobState.RETRY
            await self._release(state, refused.reason, refused.next_try_at)
            return False
        if next_usable_phone(job.phones, job.phone_index - 1) is None:
            await self._release(JobState.FAILED, "no usable phone left", None)
            return False
        return True

    async def _take(self, batch: Batch, settings: CallSettings) -> Admission | None:
        """Once a line is held: the creditor's hook, then the daily counters, the credit and the caller id
        for this dial, all or none."""
        job, now = self._job, self.rt.clock.now()
        account = await self.rt.accounts.get(job.account_id)
        with self._off_the_database():
            stop = await dialing.predial_gate(self.rt, account, job, settings)
        if stop is not None:
            await self._release(stop.state, stop.reason, stop.at)
            return None
        admitted = await admit(job, settings, account, now, cents_per_minute=self.rt.limits.cents_per_minute)
        if isinstance(admitted, Refusal):
            if admitted.suspend_account:
                await self._suspend_account(admitted.suspend_account)
            at = next_dialable(settings, admitted.retry_at) if admitted.retry_at else None
            await self._release(admitted.state, admitted.reason, at)
            return None
        held = await dialing.hold_caller_id(self.rt, batch, account, job, settings, admitted)
        if isinstance(held, dialing.Stop):
            await self._release(held.state, held.reason, held.at)
            return None
        admitted, self._from_number = held
        return admitted

    # --- attempt ----------------------------------------------------------------------------------

    async def _open_attempt(self, admission: Admission) -> Attempt:
        """Write-ahead: the attempt exists in the database before the provider hears of it.
        The credit was reserved just before: a crash in between holds money, never overspends."""
        job, now = self._job, self.rt.clock.now()
        index = next_usable_phone(job.phones, job.phone_index - 1)
        assert index is not None
        job.phone_index = index
        attempt = Attempt(attempt_id=uuid.uuid4().hex, phone=job.phones[index].number, created_at=now,
                          reserved_cents=admission.reserved_cents, reserved_ms=admission.reserved_ms,
                          settled=False, daily_keys=list(admission.daily_keys))
        attempt.from_number = self._from_number  # the pool's choice, written ahead with the attempt
        if self._settings is not None:
            attempt.local_zones = list(phone_zones(job.phones[index], self._settings.timezone))
        job.attempts.append(attempt)
        transition(job, JobState.IN_FLIGHT, f"dialing {attempt.phone}", now)
        await self._save()
        crash_point("attempt_written")
        return attempt

    async def _place(self, batch: Batch, settings: CallSettings, attempt: Attempt, *,
                     resumed: bool = False) -> dict[str, Any] | None:
        """Create the call with the attempt id as idempotency key; never with a new key.

        Once a send's answer is unknown (a transient error here, or a resumed attempt a previous owner
        may have sent), the call may exist: a refusal of a later send (e.g. a 429 given before the key
        is looked up) proves nothing, so the provider's record decides before "not placed"."""
        job = self._job
        uncertain = resumed
        dialing.prepare_attempt(self.rt, batch, job, attempt, self._from_number)  # from-number, agent (A/B arm)
        for n in range(self.rt.limits.create_retries + 1):
            age = (self.rt.clock.now() - attempt.created_at).total_seconds()
            if age > self.rt.limits.idempotency_window_s:
                break  # a re-send could dial again: ask the provider instead
            # the dial rate's wait first: the window is checked after it, right before the send
            account = await self.rt.accounts.get(job.account_id)
            with self._off_the_database():
                await dialing.before_create(self.rt, account)
            if not _rings_inside(settings, self.rt.clock.now(), attempt_zones(attempt, settings)):
                if not uncertain:  # nothing was sent: the window closed during the checks before it
                    return await self._window_closed(attempt, settings)
                break  # the window closed meanwhile: a re-send could be a first dial out of hours
            try:
                call = await self.rt.retell.create_phone_call(
                    from_number=attempt.from_number,
                    to_number=attempt.phone,
                    idempotency_key=attempt.attempt_id,
                    override_agent_id=attempt.agent_id,
                    metadata={"job_id": str(job.id), "attempt_id": attempt.attempt_id,
                              "batch_id": job.batch_id, "account_id": job.account_id},
                    dynamic_variables=variables_for(batch, job),  # with the segment's offer
                    agent_override={"agent": {"max_call_duration_ms": settings.max_call_duration_s * 1000,
                                              "ring_duration_ms": settings.ring_timeout_s * 1000}},
                )
            except TRANSIENT as exc:
                uncertain = True
                attempt.error = f"{type(exc).__name__}: {exc}"
                self.log.warning("create_call_failed", error=attempt.error, try_=n)
                await anyio.sleep(min(0.2 * 2**n, 5.0))
                continue
            except rerr.RetellError as exc:
                if uncertain and (found := await self._adopt_if_placed(attempt)) is not None:
                    return found
                return await self._refused(exc, batch, settings, attempt)
            crash_point("call_created")
            return await self._placed(attempt, call)
        return await self._resolve_unknown(attempt, settings)

    async def _window_closed(self, attempt: Attempt, settings: CallSettings) -> None:
        """Re-checked right before create-call: never dial after the window closed."""
        now = self.rt.clock.now()
        at = next_dialable_in(settings, now + timedelta(seconds=settings.ring_timeout_s),
                              attempt_zones(attempt, settings))
        attempt.placed, attempt.counted, attempt.outcome = False, False, "not_placed"
        attempt.error = "window closed before the call was sent"
        was_settled, attempt.settled = attempt.settled, True
        await self._release(JobState.RETRY, f"outside allowed hours; next window {at.isoformat()}", at)
        if not was_settled:
            await self._give_back(attempt)
        return None

    async def _refused(self, exc: rerr.RetellError, batch: Batch, settings: CallSettings,
                       attempt: Attempt) -> None:
        """The provider answered create-call with a refusal and no call of this attempt exists."""
        if (cls := classify_http_status(exc.status or 0)) is not None:  # 429 throttled, 402 payment
            if cls.outcome == OutcomeClass.ACCOUNT:
                await self._suspend_account(f"provider reports no valid payment ({exc.status})")
            return await self._not_placed(attempt, cls.outcome, settings, f"provider refused the call: {cls.reason}")
        if isinstance(exc, rerr.BadRequest):
            return await self._bad_number(attempt, settings, f"provider rejected the call: {exc.message}")
        if isinstance(exc, rerr.Unauthorized | rerr.UnknownAsset):
            await self._pause_batch(batch, f"provider refused configuration: {exc}")
            return await self._not_placed(attempt, None, settings, f"batch paused: {exc}")
        raise exc

    async def _placed(self, attempt: Attempt, call: dict[str, Any]) -> dict[str, Any]:
        attempt.call_id = str(call["call_id"])
        attempt.placed_at = self.rt.clock.now()
        attempt.placed = True
        attempt.counted = True
        attempt.call_status = call.get("call_status")
        events = job_events.call_created(self._job, attempt, self.rt.clock.now())
        self._job.outbox = events
        self._dial_over()  # the call id's checkpoint gives way to the next write-aheads
        await self.rt.give_way()
        await self._save()
        await self._relay(events)
        self.log.info("call_placed", call_id=attempt.call_id, phone=attempt.phone)
        return call

    async def _resolve_unknown(self, attempt: Attempt, settings: CallSettings) -> dict[str, Any] | None:
        """Whether create-call went through is unknown: the provider's record (by attempt id) decides."""
        if (found := await self._adopt_if_placed(attempt)) is not None:
            return found
        return await self._not_placed(attempt, OutcomeClass.PROVIDER_ERROR, settings,
                                      f"not placed: {attempt.error or 'provider unreachable'}")

    async def _adopt_if_placed(self, attempt: Attempt) -> dict[str, Any] | None:
        """The provider's call for this attempt (found by the attempt id in its metadata), adopted."""
        found = await self.rt.retell.find_calls_by_metadata("attempt_id", attempt.attempt_id)
        if not found:
            return None
        self.log.info("call_adopted", call_id=found[0].get("call_id"))
        return await self._placed(attempt, found[0])

    async def _not_placed(self, attempt: Attempt, outcome: OutcomeClass | None, settings: CallSettings,
                          reason: str) -> None:
        """The provider never dialed: the attempt does not count against the person."""
        now = self.rt.clock.now()
        attempt.placed, attempt.counted, attempt.outcome = False, False, (outcome or "not_placed")
        attempt.error = attempt.error or reason
        was_settled, attempt.settled = attempt.settled, True
        await dialing.after_not_placed(self.rt, self._job, attempt)  # a provider error feeds the breaker
        if outcome == OutcomeClass.ACCOUNT:
            await self._release(JobState.SUSPENDED, reason, None)
        elif outcome is None:
            await self._release(JobState.PENDING, reason, now)
        else:
            delay = settings.retry_delay_min.capacity if outcome == OutcomeClass.CAPACITY \
                else settings.retry_delay_min.provider_error
            at = next_dialable(settings, now + timedelta(minutes=delay))
            await self._release(JobState.RETRY, f"{reason}; next try {at.isoformat()}", at)
        if not was_settled:
            await self._give_back(attempt)
        return None

    async def _bad_number(self, attempt: Attempt, settings: CallSettings, reason: str) -> None:
        attempt.placed, attempt.counted = False, False
        cls = Classification(outcome=OutcomeClass.BAD_NUMBER, success=False, counts=False, answered=False,
                             reason="http_400")
        attempt.outcome, attempt.error = cls.outcome.value, reason
        was_settled, attempt.settled = attempt.settled, True
        await self._apply(self._decide(cls, settings, None), attempt, events=job_events.call_finished(
            self._job, attempt, self.rt.clock.now()))
        if not was_settled:
            await self._give_back(attempt)
        return None

    # --- tracking ---------------------------------------------------------------------------------

    async def _track(self, attempt: Attempt, settings: CallSettings,
                     call: dict[str, Any] | None = None) -> dict[str, Any]:
        """Follow the call until it is final: from its webhooks while they arrive (polling only when one
        is overdue, then with back-off), else by polling every ``poll_interval_s``; never abandon a
        live call. ``call`` is what create-call answered, if this actor placed it."""
        assert attempt.call_id is not None
        limits, clock = self.rt.limits, self.rt.clock
        stopped = False
        ended_seen: datetime | None = None
        quiet = 0  # polls in a row since the last webhook of this call
        while True:
            if call is None:
                try:
                    call = await self.rt.retell.get_call(attempt.call_id)
                except TRANSIENT as exc:
                    self.log.warning("get_call_failed", error=str(exc))
                    await self._wait(limits.poll_interval_s)
                    continue
                except rerr.NotFound:
                    # The provider gave us this id but no longer knows it: classify it as a provider error
                    # (retried later) rather than crash and be taken over forever.
                    self.log.error("call_unknown_to_provider", call_id=attempt.call_id)
                    return {"call_id": attempt.call_id, "call_status": "error",
                            "disconnection_reason": "error_unknown_call"}
            status = call.get("call_status")
            if status == "ongoing":
                crash_point("tracking")
            if status in FINAL_CALL_STATUSES:
                self._call_over()
                if status != "ended" or call.get("call_analysis") is not None:
                    return call
                ended_seen = ended_seen or clock.now()
                if (clock.now() - ended_seen).total_seconds() >= limits.analysis_wait_s:
                    return call  # analysis never came: classify on what we have
            elif status == "ongoing" and not stopped:
                started = _ms_to_dt(call.get("start_timestamp"))
                limit = settings.max_call_duration_s + limits.stop_grace_s
                if started is not None and (clock.now() - started).total_seconds() > limit:
                    self.log.warning("call_over_max_duration", call_id=attempt.call_id)
                    try:
                        await self.rt.retell.stop_call(attempt.call_id)
                        stopped = True
                    except rerr.RetellError as exc:
                        self.log.warning("stop_call_failed", error=str(exc))
            event = await self._wait(self._patience(call, settings, quiet, ended_seen))
            if event is not None and str(event.call.get("call_id")) == attempt.call_id:
                call, quiet = _later(call, event.call), 0
            else:
                call, quiet = None, quiet + 1  # nothing came in time: ask the provider

    @contextmanager
    def _off_the_database(self) -> Iterator[None]:
        """A wait of this dial that is not for the database (the creditor's hook, the dial rate): work
        that gives way to dials need not wait for it."""
        key, dialing = self._dial_key, self.rt.dialing
        held = key is not None and dialing.holds(key)
        if held:
            dialing.let_go(key)
        try:
            yield
        finally:
            if held and self._on_dialed is not None:  # still to dial
                dialing.hold(key)

    def _dial_over(self) -> None:
        """Once: this actor's create-call is behind it, or will not be sent."""
        if self._on_dialed is not None:
            self._on_dialed()
            self._on_dialed = None

    def _call_over(self) -> None:
        if self._on_call_ended is not None:
            self._on_call_ended()
            self._on_call_ended = None

    def _patience(self, call: dict[str, Any], settings: CallSettings, quiet: int,
                  ended_seen: datetime | None) -> float:
        """Business seconds to wait for this call's next webhook before polling it."""
        limits, now = self.rt.limits, self.rt.clock.now()
        if not self.rt.webhooks_arriving():
            return limits.poll_interval_s
        if quiet:  # a webhook is overdue: poll with back-off
            return min(limits.poll_interval_s * 2 ** min(quiet, 16), limits.webhook_poll_max_s)
        status = call.get("call_status")
        if status == "ended" and ended_seen is not None:  # waiting for call_analyzed
            return max(1.0, limits.analysis_wait_s - (now - ended_seen).total_seconds())
        started = _ms_to_dt(call.get("start_timestamp"))
        if status == "ongoing" and started is not None:  # at the latest, when it must be stopped
            deadline = started + timedelta(seconds=settings.max_call_duration_s + limits.stop_grace_s)
            return max(1.0, (deadline - now).total_seconds() + 1.0)
        # registered: it rings at most ring_timeout_s before it is answered or not
        return settings.ring_timeout_s + limits.poll_interval_s

    async def _wait(self, seconds: float) -> CallEvent | None:
        """Sleep up to ``seconds`` of business time, or until a webhook for this call arrives; a burst
        of webhooks is drained and the most advanced one returned."""
        with anyio.move_on_after(self.rt.clock.real_seconds(seconds)):
            event = await self.mailbox.receive()
            while True:
                try:
                    nxt = self.mailbox.receive_nowait()
                except anyio.WouldBlock:
                    return event
                event = CallEvent(nxt.event, _later(event.call, nxt.call))
        return None

    # --- result -----------------------------------------------------------------------------------

    async def _finish(self, attempt: Attempt, settings: CallSettings, call: dict[str, Any]) -> None:
        await self.rt.give_way()  # the line is free: the next dials' writes go first
        job = self._job
        assert attempt.call_id is not None
        cls = classify_call(call)
        analysis = call.get("call_analysis") or {}
        cost = (call.get("call_cost") or {}).get("combined_cost")
        attempt.call_status = call.get("call_status")
        attempt.disconnection_reason = call.get("disconnection_reason")
        attempt.started_at = _ms_to_dt(call.get("start_timestamp"))
        attempt.ended_at = _ms_to_dt(call.get("end_timestamp"))
        attempt.duration_ms = call.get("duration_ms")
        attempt.cost_cents = float(cost) if isinstance(cost, int | float) else None
        attempt.outcome, attempt.success, attempt.counted = cls.outcome.value, cls.success, cls.counts
        attempt.summary = analysis.get("call_summary")
        attempt.sentiment = analysis.get("user_sentiment")
        attempt.in_voicemail = analysis.get("in_voicemail")
        attempt.collected = dict(call.get("collected_dynamic_variables") or {})
        attempt.recording_url = call.get("recording_url")
        attempt.public_log_url = call.get("public_log_url")
        await save_call_payload(CallRecord(
            call_id=attempt.call_id, job_id=str(job.id), attempt_id=attempt.attempt_id, batch_id=job.batch_id,
            account_id=job.account_id, call_status=attempt.call_status, payload=call,
            updated_at=self.rt.clock.now(),
        ))
        crash_point("result_written")
        if cls.do_not_call:
            await add_do_not_call(job, f"asked on call {attempt.call_id}", self.rt.clock.now())
        if cls.outcome == OutcomeClass.CALLER_ID:  # our number is the problem: say so where operators look
            self.log.warning("caller_id_refused", reason=cls.reason, call_id=attempt.call_id,
                             from_number=call.get("from_number"))
            await dialing.caller_id_refused(self.rt, job, attempt, settings, cls.reason)  # rest that number
        step = self._decide(cls, settings, callback_requested_at(call, local_tz=settings.tz))
        self.log.info("call_finished", call_id=attempt.call_id, outcome=cls.outcome.value, success=cls.success,
                      reason=cls.reason, action=step.action)
        was_settled, attempt.settled = attempt.settled, True
        await self._apply(step, attempt, events=job_events.call_finished(job, attempt, self.rt.clock.now()))
        if not was_settled:
            # After the checkpoint that marks it settled: a crash in between keeps the reservation held
            # (never a double refund).
            # Shielded: a graceful shutdown must not cut between the settled mark and the money.
            with anyio.CancelScope(shield=True):
                account = await self.rt.accounts.get(job.account_id)
                plan = account.plan if account is not None else Plan.UNLIMITED
                delta_cents, delta_ms = settle(plan.value, reserved_cents=attempt.reserved_cents,
                                               reserved_ms=attempt.reserved_ms,
                                               cost_cents=attempt.cost_cents or 0.0,
                                               duration_ms=attempt.duration_ms or 0)
                await accounts.settle(job.account_id, reserved_cents=attempt.reserved_cents,
                                      reserved_ms=attempt.reserved_ms, delta_cents=delta_cents,
                                      delta_ms=delta_ms, cost_cents=attempt.cost_cents or 0.0)

    def _decide(self, cls: Classification, settings: CallSettings, callback_at: datetime | None) -> NextStep:
        job = self._job
        if cls.counts:
            job.attempts_counted += 1
            job.phones[job.phone_index].attempts += 1
        usable = [i for i, p in enumerate(job.phones) if not p.bad and i != job.phone_index]
        return decide_next(classification=cls, settings=settings, now=self.rt.clock.now(),
                           attempts_counted=job.attempts_counted, phones_usable_after=len(usable),
                           callback_at=callback_at)

    async def _apply(self, step: NextStep, attempt: Attempt, *, events: list[OutboxItem] | None = None) -> None:
        job = self._job
        step = await dialing.after_attempt(self.rt, job, attempt, step)  # failure circuit breaker
        if step.mark_phone_bad:
            phone = job.phones[job.phone_index]
            phone.bad, phone.bad_reason = True, attempt.disconnection_reason or attempt.error or step.reason
        if step.action in ("retry", "next_phone", "backoff"):
            # rotate to the person's next phone; a stable order, never hash order
            nxt = next_usable_phone(job.phones, job.phone_index)
            job.phone_index = job.phone_index if nxt is None else nxt
            await self._release(JobState.RETRY, step.reason, step.next_try_at, events=events)
            return
        state = {"done": JobState.DONE, "failed": JobState.FAILED, "excluded": JobState.EXCLUDED,
                 "suspended": JobState.SUSPENDED}[step.action]
        await self._release(state, step.reason, step.next_try_at, events=events)

    # --- persistence ------------------------------------------------------------------------------

    @property
    def _job(self) -> Job:
        assert self.job is not None
        return self.job

    async def _save(self) -> None:
        job = self._job
        if job.lease is not None:
            job.lease.until_ms = self.rt.lease_until_ms()
        await checkpoint(job)

    async def _release(self, state: JobState, reason: str, next_try_at: datetime | None, *,
                       events: list[OutboxItem] | None = None) -> None:
        self._dial_over()  # not dialing (any more)
        await self.rt.give_way()
        job, now = self._job, self.rt.clock.now()
        if state == JobState.RETRY and next_try_at is not None and self._settings is not None:
            # a next try planned in the batch's zone waits until the window holds for the next phone too
            next_try_at, reason = push_into_zones(self._settings, next_try_at, job.phones, job.phone_index, reason)
        transition(job, state, reason, now)
        # written in this checkpoint with their cause, relayed right after it (docs/integrations.md)
        events = [*(events or ()), *job_events.state_reached(job, state, reason, now)]
        if events:
            job.outbox = events
        if state == JobState.SUSPENDED and next_try_at is None:
            # Not claimable again in the scheduling round that suspended it; after a top-up, soon.
            next_try_at = now + timedelta(seconds=self.rt.limits.scheduler_interval_s)
        if next_try_at is not None:
            job.next_try_at = next_try_at
        job.lease = None
        await checkpoint(job)
        if self._on_release is not None:
            self._on_release(job)
        if events:
            crash_point("outbox_written")
            await self._relay(events)
        self.log.info("job_released", state=state.value, reason=reason)

    async def _relay(self, events: list[OutboxItem]) -> None:
        """Right after the checkpoint that recorded them; a failure here leaves them on the job, where
        the outbox sweep finds them (shielded: a shutdown must not cut a relay in half)."""
        with anyio.CancelScope(shield=True):
            try:
                await self.rt.outbox.relay(events)
            except ConnectionFailure as exc:
                self.log.warning("outbox_relay_deferred", error=str(exc), events=len(events))

    async def _relay_leftovers(self) -> None:
        """Events a previous owner wrote but may not have relayed; relayed before this actor's first
        checkpoint replaces them."""
        job = self._job
        if job.outbox and not self.rt.outbox.is_relayed(job.outbox):
            await self.rt.outbox.relay(job.outbox)
        job.outbox = []

    async def _give_back(self, attempt: Attempt) -> None:
        """A dial that never happened returns its reservation and daily counters. Called after the
        checkpoint that marks the attempt settled, so a crash in between never refunds twice;
        shielded, so a graceful shutdown does not cut it short."""
        with anyio.CancelScope(shield=True):
            await accounts.settle(self._job.account_id, reserved_cents=attempt.reserved_cents,
                                  reserved_ms=attempt.reserved_ms, delta_cents=attempt.reserved_cents,
                                  delta_ms=attempt.reserved_ms, cost_cents=0.0)
            for key in attempt.daily_keys:
                await accounts.give_back_daily(key)

    async def _suspend_account(self, reason: str) -> None:
        event = account_event(epoch_ms(self.rt.clock.now()), account_id=self._job.account_id, reason=reason)
        result = await Account.get_pymongo_collection().update_one(
            {"_id": self._job.account_id, "suspended_reason": None},
            {"$set": {"suspended_reason": reason, "outbox": [event.model_dump()]}})
        if result.modified_count:
            await self._relay([event])
        self.rt.forget_cached()
        if self.rt.recall_waiting is not None:  # jobs of this account waiting for a line look again
            self.rt.recall_waiting(self._job.account_id)
        self.log.error("account_suspended", account_id=self._job.account_id, reason=reason)

    async def _pause_batch(self, batch: Batch, reason: str) -> None:
        await dialing.pause_batch(self.rt, batch.id, reason)  # with its batch.paused event
