"""The scheduler actor: decides which jobs are due and starts a call actor for each, within limits.

A job is started only when its batch is active, the batch's window is open, its ``next_try_at``
has come, the account is not suspended and a concurrency slot (global and per account) is free.
Between decisions it sleeps until the earliest moment something can change, or until a message
(a call finished, an operator action) arrives. It never spins on out-of-hours jobs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

import anyio
from bson import ObjectId
from pymongo.errors import ConnectionFailure

from actors.clock import SimClock
from actors.mailbox import Mailbox
from actors.supervisor import RestartPolicy, Supervisor
from speechai.domain.settings import CallSettings
from speechai.domain.windows import fmt_local, is_dialable, next_dialable
from speechai.runtime.call_actor import CallActor
from speechai.runtime.context import Runtime
from speechai.store import slots
from speechai.store.jobs import claim_due, claim_expired
from speechai.store.models import CLAIMABLE_STATES, DUE_STATES, Account, Batch, BatchStatus, Job, JobState


@dataclass(frozen=True)
class CallFinished:
    job_id: str
    child: str


@dataclass(frozen=True)
class Wake:
    reason: str


SchedulerMsg = CallFinished | Wake
BUSY_RETRY_S = 0.25  # real seconds between looks while due jobs wait for a free slot


class Scheduler:
    def __init__(self, rt: Runtime, calls: Supervisor, *, until_done: bool = False) -> None:
        self.rt = rt
        self.calls = calls
        self.until_done = until_done
        self.mailbox: Mailbox[SchedulerMsg] = Mailbox(capacity=1000)
        self.in_flight: dict[str, str] = {}  # job id -> name of the call actor holding it
        self._slot_scopes: set[str] = set()
        self._started = 0
        self._waiting: dict[str, str | None] = {}  # batch id -> waiting reason last written to its jobs
        self.log = rt.log.bind(actor="scheduler")

    @property
    def ref(self):
        return self.mailbox.ref

    async def run(self) -> None:
        while True:
            try:
                wake_at = await self.fill()
                nothing_left = self.until_done and not self.in_flight and await self._nothing_left()
            except ConnectionFailure as exc:
                # No dialing while the database is away: claims need it. Look again shortly.
                self.log.warning("database_unavailable", error=str(exc))
                await anyio.sleep(1.0)
                continue
            if nothing_left:
                if self.rt.done is not None:
                    self.rt.done.set()
                return
            now = self.rt.clock.now()
            if (wake_at is not None and wake_at > now and not self.in_flight and self.rt.limits.skip_idle
                    and isinstance(self.rt.clock, SimClock)):
                self.rt.clock.advance_to(wake_at)  # nothing can happen until then: skip ahead
                continue
            cap = now + timedelta(seconds=self.rt.limits.scheduler_interval_s)
            await self._receive_until(min(wake_at, cap) if wake_at else cap)

    async def _receive_until(self, when: datetime) -> None:
        # Waiting messages first: under a zero timeout receive() is cancelled before it looks, so with
        # every slot busy and more jobs due the scheduler would never see its calls finish.
        if self._drain():
            return
        delay = self.rt.clock.real_seconds(max(0.0, (when - self.rt.clock.now()).total_seconds()))
        # Something is due but could not start (no slot free here or across instances): wait for a call
        # to finish or a short while instead of spinning on the database.
        with anyio.move_on_after(delay if delay > 0 else BUSY_RETRY_S):
            self._handle(await self.mailbox.receive())
            self._drain()

    def _drain(self) -> bool:
        handled = False
        while True:
            try:
                self._handle(self.mailbox.receive_nowait())
            except anyio.WouldBlock:
                return handled
            handled = True

    def _handle(self, msg: SchedulerMsg) -> None:
        if isinstance(msg, CallFinished):
            if self.in_flight.get(msg.job_id) == msg.child:  # not a newer actor of the same job
                del self.in_flight[msg.job_id]

    # --- decisions --------------------------------------------------------------------------------

    async def fill(self) -> datetime | None:
        """Start every call that may start now; return when the next one may become due."""
        await self._take_over_expired()
        now = self.rt.clock.now()
        batches = await Batch.find({"status": {"$in": [BatchStatus.ACTIVE.value, BatchStatus.PAUSED.value]}}
                                   ).to_list()
        # filtered here, not with $ne: None, which the embedded server also matches on missing fields
        suspended = {a.id: a.suspended_reason for a in await Account.find_all().to_list() if a.suspended_reason}
        wake_at: datetime | None = None
        open_batches: list[tuple[Batch, CallSettings]] = []
        for batch in batches:
            settings = batch.call_settings.effective()
            if batch.status == BatchStatus.PAUSED:
                await self._mark_waiting(batch, f"batch paused: {batch.status_reason or 'by operator'}")
                continue
            if batch.account_id in suspended:
                await self._mark_waiting(batch, f"account suspended: {suspended[batch.account_id]}")
                continue
            if is_dialable(settings, now):
                open_batches.append((batch, settings))
                await self._mark_waiting(batch, None)
            else:
                opens = next_dialable(settings, now, use_waves=False)
                await self._mark_waiting(batch, f"outside allowed hours; window opens {fmt_local(settings, opens)}")
            nxt = await self._next_due(batch, settings, now)
            if nxt is not None and (wake_at is None or nxt < wake_at):
                wake_at = nxt
        # Highest priority first; within a priority, batches take turns one job at a time.
        open_batches.sort(key=lambda bs: -bs[1].priority)
        for _, group in groupby(open_batches, key=lambda bs: bs[1].priority):
            ring = [b for b, _ in group]
            while ring and self._free_slots() > 0:
                for batch in list(ring):
                    if self._free_slots() <= 0:
                        break
                    if not await self._claim(batch, now):
                        ring.remove(batch)
        return wake_at

    async def _mark_waiting(self, batch: Batch, reason: str | None) -> None:
        """Record on the batch's waiting jobs why they are not being dialed (one bulk write per change)."""
        if self._waiting.get(batch.id, "") == reason:
            return
        await Job.get_pymongo_collection().update_many(
            {"batch_id": batch.id, "state": {"$in": [s.value for s in CLAIMABLE_STATES]}},
            {"$set": {"waiting_reason": reason}})
        self._waiting[batch.id] = reason

    async def _next_due(self, batch: Batch, settings: CallSettings, now: datetime) -> datetime | None:
        first = await Job.find(
            {"batch_id": batch.id, "state": {"$in": [s.value for s in CLAIMABLE_STATES]}}
        ).sort("next_try_at").limit(1).to_list()
        if not first:
            return None
        # Waves shape when retries are scheduled, not when an already-due job may start.
        return next_dialable(settings, max(first[0].next_try_at, now), use_waves=False)

    def _free_slots(self) -> int:
        return self.rt.limits.concurrency - len(self.in_flight)

    async def _take_slots(self, holder: str, account_id: str | None) -> bool:
        """A global slot and, when the account is known, one of the account's: both or neither."""
        rt, until, now_ms = self.rt, self.rt.lease_until_ms(), self.rt.now_ms()
        if "global" not in self._slot_scopes:
            await slots.ensure_slots("global", rt.limits.concurrency)
            self._slot_scopes.add("global")
        if not await slots.acquire("global", rt.limits.concurrency, holder, rt.instance_id, until, now_ms):
            return False
        if account_id is None:
            return True
        account = await Account.get(account_id)
        limit = account.max_concurrent_calls if account else rt.limits.concurrency
        scope = f"account:{account_id}"
        if scope not in self._slot_scopes:
            await slots.ensure_slots(scope, limit)
            self._slot_scopes.add(scope)
        if not await slots.acquire(scope, limit, holder, rt.instance_id, until, now_ms):
            await slots.release(holder)
            return False
        return True

    async def _claim(self, batch: Batch, now: datetime) -> bool:
        holder = f"claim:{uuid.uuid4().hex}"
        if not await self._take_slots(holder, batch.account_id):
            return False
        job = await claim_due(batch.id, self.rt.instance_id, self.rt.lease_until_ms(), now)
        if job is None:
            await slots.release(holder)
            return False
        await slots.rename_holder(holder, str(job.id))
        self._start(str(job.id), job.account_id)
        return True

    async def _take_over_expired(self) -> None:
        while self._free_slots() > 0:
            holder = f"claim:{uuid.uuid4().hex}"
            # The account is unknown until the job is claimed: a takeover resumes a call already
            # counted against its account, so only the global slot is taken here.
            if not await self._take_slots(holder, None):
                return
            job = await claim_expired(self.rt.instance_id, self.rt.lease_until_ms(), self.rt.now_ms())
            if job is None:
                await slots.release(holder)
                return
            await slots.release(str(job.id))  # whatever the dead owner held
            await slots.rename_holder(holder, str(job.id))
            self.log.warning("lease_taken_over", job_id=str(job.id))
            self._start(str(job.id), job.account_id)

    def _start(self, job_id: str, account_id: str) -> None:
        # Unique child names: a released job can be claimed again before its previous actor has exited.
        self._started += 1
        child = f"call-{job_id}-{self._started}"
        self.in_flight[job_id] = child
        actor = CallActor(self.rt, ObjectId(job_id))
        self.calls.start_child(child, actor.run, policy=RestartPolicy.TRANSIENT,
                               on_exit=lambda name, exc: self.ref.tell_nowait(CallFinished(job_id, name)))

    async def _nothing_left(self) -> bool:
        active = [b.id for b in await Batch.find({"status": BatchStatus.ACTIVE.value}).to_list()]
        states = [s.value for s in (*DUE_STATES, JobState.IN_FLIGHT)]
        return await Job.find({"batch_id": {"$in": active}, "state": {"$in": states}}).count() == 0

