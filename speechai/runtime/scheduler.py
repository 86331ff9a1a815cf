"""The scheduler actor: decides which jobs are due and starts a call actor for each, within limits.

A job is started only when its batch is active, the batch's window is open, its next-try time has
come, the account is not suspended, and a slot is free (this instance's concurrency, and the
account's provider concurrency shared by every instance). Due jobs come from an in-memory index
(``DueIndex``), not from a database scan; a claim is a bulk point update that re-checks state and time.
On start it first re-adopts the jobs an earlier process of the same instance id held, and on every
resync it takes over other instances' expired leases in bulk, ahead of new claims. Between decisions it
sleeps until the earliest moment something can change, or until a message (a call finished, an
operator action) arrives. It never spins on out-of-hours jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

import anyio
from pymongo.errors import ConnectionFailure

from actors.clock import SimClock
from actors.mailbox import Mailbox
from actors.supervisor import RestartPolicy, Supervisor
from actors.ticket import Ticket
from speechai.dialing.rate import outbound_limit
from speechai.domain.settings import CallSettings
from speechai.domain.windows import fmt_local, is_dialable, next_dialable
from speechai.runtime.call_actor import CallActor, has_open_attempt
from speechai.runtime.context import Runtime
from speechai.runtime.due_index import DueIndex
from speechai.store import jobs as job_store
from speechai.store.models import (
    CLAIMABLE_STATES,
    DUE_STATES,
    Account,
    Batch,
    BatchStatus,
    Job,
    JobState,
    epoch_ms,
    from_epoch_ms,
)
from speechai.store.peers import peers_alive


@dataclass(frozen=True)
class CallFinished:
    job_id: str
    child: str


@dataclass(frozen=True)
class LineFree:
    """A call actor's call ended at the provider: its line and slots are free before its last writes."""

    child: str


@dataclass(frozen=True)
class Dialed:
    """A call actor holding a line is past its create-call (placed or not)."""

    child: str


@dataclass(frozen=True)
class LineWanted:
    """A call actor claimed ahead of a free line has made its checks and waits for one."""

    child: str


@dataclass(frozen=True)
class Wake:
    reason: str


SchedulerMsg = CallFinished | LineFree | Dialed | LineWanted | Wake
PEERS_EVERY_S = 10.0  # real seconds between looks at which other instances are running
BUSY_RETRY_S = 0.25  # real seconds between looks while due jobs wait for a slot held by another instance
# Resyncs read jobs written since the last one minus this margin: clocks of instances differ a little.
SYNC_SKEW_MS = 5_000
WAITING = {s.value for s in CLAIMABLE_STATES}
GLOBAL = "global"
LIMIT_AGE_S = 10.0  # real seconds an account's cached concurrency limit may be used to hand on a line
# While jobs claimed ahead wait for a line, the view (and with it the cached batches and accounts the call
# actors read) is renewed at this fraction of the cache's lifetime: a freed line never waits for those reads.
VIEW_RENEW_AT = 0.6


def account_limit(account: Account | None, default: int) -> int:
    """The account's provider concurrency left to outbound calls (its reserved inbound lines kept free)."""
    if account is None:
        return default
    return outbound_limit(account.max_concurrent_calls, account.reserved_inbound_calls)


def account_scope(account_id: str) -> str:
    return f"account:{account_id}"


class Scheduler:
    def __init__(self, rt: Runtime, calls: Supervisor, *, until_done: bool = False) -> None:
        self.rt = rt
        self.calls = calls
        self.until_done = until_done
        self.mailbox: Mailbox[SchedulerMsg] = Mailbox(capacity=10_000)
        self.in_flight: dict[str, str] = {}  # job id -> name of the call actor holding it
        self.index = DueIndex()
        self._loaded: set[str] = set()  # batches whose waiting jobs are in the index
        self._loading: dict[str, dict[str, dict[str, Any]]] = {}  # batch id -> rows released meanwhile
        self._scope_of: dict[str, str] = {}  # call actor name -> account slot scope it holds
        # call actors whose call may still be live at the provider (those not yet past their create-call
        # hold ``rt.dialing``)
        self._lines: set[str] = set()
        # call actors claimed ahead of a free line (child -> its ticket, account id), in claim order
        self._tickets: dict[str, tuple[Ticket[str], str]] = {}
        self._started = 0
        self._waiting: dict[str, str | None] = {}  # batch id -> waiting reason last written to it
        self._synced_ms = 0  # wall ms at the start of the last resync
        self._next_sync = 0.0  # monotonic seconds
        self._view: tuple[float, list[Batch], dict[str, str]] | None = None
        self._view_epoch = -1
        self.last_pass_ms: int | None = None  # wall ms at the start of the last decision pass
        self._peers = 1  # other instances running (assumed until looked at)
        self._next_peers = 0.0  # monotonic seconds
        self._born = time.monotonic()
        self.log = rt.log.bind(actor="scheduler")
        rt.recall_waiting = self.recall

    @property
    def ref(self):
        return self.mailbox.ref

    async def run(self) -> None:
        # Batches are loaded whole when first seen: the resync only needs what changes from now on.
        self._synced_ms = self.rt.now_ms()
        await self._retrying(self.readopt)
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

    async def _retrying(self, step: Any) -> None:
        while True:
            try:
                return await step()
            except ConnectionFailure as exc:
                self.log.warning("database_unavailable", error=str(exc))
                await anyio.sleep(1.0)

    async def _receive_until(self, when: datetime) -> None:
        # Waiting messages first: under a zero timeout receive() is cancelled before it looks, so with
        # every slot busy and more jobs due the scheduler would never see its calls finish.
        if self._drain():
            return
        delay = self.rt.clock.real_seconds(max(0.0, (when - self.rt.clock.now()).total_seconds()))
        # Until the next resync at most: other instances' changes and expired leases show up there.
        delay = min(delay, max(0.0, self._next_sync - time.monotonic())) if delay > 0 else BUSY_RETRY_S
        if self._tickets and self._view is not None:  # and until the view is due for renewal
            delay = min(delay, max(0.0, self._view[0] + self._view_max_age() - time.monotonic()))
        with anyio.move_on_after(max(delay, 0.005)):
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
        # Lines were freed and handed on already, in the sender's task: this pass claims more ahead.
        if isinstance(msg, CallFinished):
            self._tickets.pop(msg.child, None)
            if self.in_flight.get(msg.job_id) == msg.child:  # not a newer actor of the same job
                del self.in_flight[msg.job_id]
        elif isinstance(msg, Wake):  # an operator changed something: read it fresh, and resync now
            self.rt.forget_cached()
            self._view = None
            self._next_sync = 0.0
            self.recall()  # what the waiting ones checked may have changed

    def recall(self, account_id: str | None = None) -> None:
        """Send the call actors waiting for a line (of ``account_id``, or all) to look again."""
        for ticket, of in self._tickets.values():
            if account_id is None or of == account_id:
                ticket.recall()

    def released(self, job: Job) -> None:
        """A call actor of this instance wrote its job's new state: the index follows at once."""
        row = {"_id": job.id, "batch_id": job.batch_id, "state": job.state.value,
               "next_try_ms": epoch_ms(job.next_try_at), "priority": job.priority}
        if job.batch_id in self._loaded:
            self.index.apply(row, WAITING)
        elif (loading := self._loading.get(job.batch_id)) is not None:
            loading[str(job.id)] = row

    # --- recovery ---------------------------------------------------------------------------------

    async def readopt(self) -> None:
        """Before anything new: every job an earlier process of this instance id was running."""
        rt = self.rt
        mine = await job_store.readopt_own(rt.instance_id, rt.generation, rt.lease_until_ms())
        await self._start_resumed(mine)
        if mine:
            self.log.warning("jobs_readopted", count=len(mine))

    async def _take_over_expired(self) -> None:
        """Other instances' expired leases, in bulk, ahead of new claims (capped by free slots)."""
        rt = self.rt
        free = self._free_slots()
        if free <= 0:
            return
        ids = await job_store.expired_leases(rt.now_ms(), free)
        taken = await job_store.take_over(ids, rt.instance_id, rt.generation, rt.lease_until_ms(), rt.now_ms())
        for job in taken:
            self.log.warning("lease_taken_over", job_id=str(job.id))
        await self._start_resumed(taken)

    # --- due index --------------------------------------------------------------------------------

    async def _load_batch(self, batch_id: str) -> None:
        # A job released while its batch is read may have been read before its release: its release
        # is applied after the read, or it would wait unseen until someone else changed it.
        self._loading[batch_id] = released = {}
        try:
            async for row in job_store.waiting_rows(batch_id):
                self.index.apply(row, WAITING)
        finally:
            del self._loading[batch_id]
        for row in released.values():
            self.index.apply(row, WAITING)
        self._loaded.add(batch_id)

    async def _resync(self) -> None:
        await self.rt.give_way()  # a read of what changed can wait for the dials of this moment
        start = self.rt.now_ms()
        async for row in job_store.changed_since(self._synced_ms - SYNC_SKEW_MS):
            if row["batch_id"] in self._loaded and str(row["_id"]) not in self.in_flight:
                self.index.apply(row, WAITING)
        self._synced_ms = start
        if time.monotonic() >= self._next_peers:
            # Instances starting together may not have registered yet: assume one for a while.
            young = time.monotonic() - self._born < PEERS_EVERY_S
            self._peers = max(await peers_alive(self.rt.instance_id, start), 1 if young else 0)
            self._next_peers = time.monotonic() + PEERS_EVERY_S
        await self._take_over_expired()
        self._next_sync = time.monotonic() + self.rt.limits.resync_interval_s

    async def _current_view(self) -> tuple[list[Batch], dict[str, str]]:
        """Active and paused batches, and suspended accounts: re-read at most once per cache period."""
        # Other instances' and the database's own changes to batches and accounts show within a resync;
        # this instance's own changes bump the epoch and show at once.
        if (self._view is not None and self._view_epoch == self.rt.view_epoch
                and time.monotonic() - self._view[0] < self._view_max_age()):
            return self._view[1], self._view[2]
        await self.rt.give_way()
        self._view_epoch = self.rt.view_epoch
        batches = await Batch.find({"status": {"$in": [BatchStatus.ACTIVE.value, BatchStatus.PAUSED.value]}}
                                   ).to_list()
        # filtered here, not with $ne: None, which the embedded server also matches on missing fields
        accounts = await Account.find_all().to_list()
        suspended = {a.id: a.suspended_reason for a in accounts if a.suspended_reason}
        for b in batches:  # the call actors read these next: one read serves them all
            self.rt.batches.put(b.id, b)
        for a in accounts:
            self.rt.accounts.put(a.id, a)
        for gone in self._loaded - {b.id for b in batches}:
            self.index.drop_batch(gone)
            self._loaded.discard(gone)
        self._view = (time.monotonic(), batches, suspended)
        return batches, suspended

    def _view_max_age(self) -> float:
        """Real seconds the view is used: renewed before the cached copies expire while jobs claimed
        ahead wait for a line (they read them the moment one is free), else at every resync."""
        limits = self.rt.limits
        if self._tickets:
            return min(limits.resync_interval_s, limits.cache_ttl_s * VIEW_RENEW_AT)
        return limits.resync_interval_s

    # --- decisions --------------------------------------------------------------------------------

    async def fill(self) -> datetime | None:
        """Start every call that may start now; return when the next one may become due."""
        # Slots another instance waits for go back first (their fair share), then free lines go to
        # those claimed ahead: they are ready to dial at once.
        self.last_pass_ms = self.rt.now_ms()
        await self.rt.quotas.trim()
        await self._grant_lines()
        if time.monotonic() >= self._next_sync:
            await self._resync()
        now = self.rt.clock.now()
        batches, suspended = await self._current_view()
        wake_at: datetime | None = None
        open_batches: list[tuple[Batch, CallSettings]] = []
        for batch in batches:
            settings = batch.call_settings.effective()
            if batch.id not in self._loaded:
                await self._load_batch(batch.id)
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
            nxt = self._next_due(batch, settings, now)
            if nxt is not None and (wake_at is None or nxt < wake_at):
                wake_at = nxt
        # Highest priority first; within a priority, batches take turns one job at a time.
        open_batches.sort(key=lambda bs: -bs[1].priority)
        now_ms = epoch_ms(now)
        higher_waiting = False  # a batch of higher priority has jobs waiting (due or not)
        for _, group in groupby(open_batches, key=lambda bs: bs[1].priority):
            members = [b for b, _ in group]
            ring = list(members)
            while ring and self._free_slots() > 0:
                # Turns across the ring until the free slots are spoken for, then one bulk claim.
                picks: list[tuple[Any, str]] = []
                while ring and len(picks) < self._free_slots():
                    for batch in list(ring):
                        if len(picks) >= self._free_slots():
                            break
                        if (job_id := await self._pick(batch, now_ms)) is None:
                            ring.remove(batch)
                        else:
                            picks.append((job_id, account_scope(batch.account_id)))
                if picks:
                    await self._claim(picks, now_ms)
            # With every line busy, a few more are claimed and checked ahead, so that a line freed by
            # a call that ends goes to one of them at once. Claimed in bulk, half the bench at a time:
            # one claim and one do-not-call read serve several jobs.
            ring = [b for b in members if self.rt.quotas.in_use(account_scope(b.account_id)) > 0]
            target = min(self.rt.limits.ready_ahead, self.rt.limits.concurrency)
            # Not while a call actor holding a line has still to dial: the checks of those claimed ahead
            # would queue its write-ahead and create-call behind them on the database.
            if self._room_ahead() < max(1, target // 2) or higher_waiting or self.rt.dialing.held:
                ring = []  # ... and never of lower priority: they would take the next lines first
            higher_waiting = higher_waiting or any(self.index.earliest(b.id) is not None for b in members)
            ahead: list[Any] = []
            while ring and len(ahead) < self._room_ahead():
                for batch in list(ring):
                    if len(ahead) >= self._room_ahead():
                        break
                    if (job_id := self._pick_ahead(batch, now_ms, ahead)) is None:
                        ring.remove(batch)
                    else:
                        ahead.append((job_id, batch.account_id))
            if ahead:
                await self._claim_ahead(ahead, now_ms)
        return wake_at

    async def _pick(self, batch: Batch, now_ms: int) -> Any | None:
        """The batch's next due job, with an account slot held for it; None when it has none to give."""
        first = self.index.earliest(batch.id)
        if first is None or first > now_ms:
            return None
        account = await self.rt.accounts.get(batch.account_id)
        limit = account_limit(account, self.rt.limits.concurrency)
        if not await self._take_global():
            return None
        if not await self.rt.quotas.take(account_scope(batch.account_id), limit):
            self.rt.quotas.free(GLOBAL)
            return None
        return self.index.pop_due(batch.id, now_ms)

    def _room_ahead(self) -> int:
        return min(self.rt.limits.ready_ahead, self.rt.limits.concurrency) - len(self._tickets)

    def _pick_ahead(self, batch: Batch, now_ms: int, ahead: list[Any]) -> Any | None:
        """The batch's next due job to claim ahead of a line: never more for an account than its own
        calls here that will end (another instance's calls free no line of this one)."""
        first = self.index.earliest(batch.id)
        if first is None or first > now_ms:
            return None
        # With other instances running, the last due jobs are left to whichever has a free line first:
        # claimed ahead here they would wait for this one's lines while another's stand idle.
        if self._peers and not self.index.due_at_least(batch.id, now_ms, self._room_ahead() + 1):
            return None
        lines = self.rt.quotas.in_use(account_scope(batch.account_id))
        waiting = sum(1 for _, a in self._tickets.values() if a == batch.account_id)
        if waiting + sum(1 for _, a in ahead if a == batch.account_id) >= lines:
            return None
        return self.index.pop_due(batch.id, now_ms)

    async def _claim_ahead(self, picks: list[tuple[Any, str]], now_ms: int) -> None:
        rt = self.rt
        for job in await job_store.claim_many([job_id for job_id, _ in picks], rt.instance_id, rt.generation,
                                              rt.lease_until_ms(), now_ms):
            self._start_child(job, None, ahead=True)

    async def _grant_lines(self) -> None:
        """Free lines to the actors claimed ahead that are waiting, in claim order, within the shared
        concurrency of the workspace and of each one's account."""
        for child, (ticket, account_id) in list(self._tickets.items()):
            if self._free_slots() <= 0:
                return
            if not ticket.waiting:
                continue
            scope = account_scope(account_id)
            limit = account_limit(await self.rt.accounts.get(account_id), self.rt.limits.concurrency)
            if not await self._take_global():
                return
            if not await self.rt.quotas.take(scope, limit):
                self.rt.quotas.free(GLOBAL)
                continue
            self._hand_line(child, ticket, scope)

    def _grant_now(self) -> None:
        """``_grant_lines`` without the database, in the task of the call that freed a line: only from
        slots already granted and an account already cached; what needs a read waits for the pass."""
        quotas = self.rt.quotas
        for child, (ticket, account_id) in list(self._tickets.items()):
            if self._free_slots() <= 0:
                return
            if not ticket.waiting:
                continue
            # Only its concurrency limit counts here (the holder looks at the account again): a copy
            # some seconds old will do; an operator's change drops it.
            fresh, account = self.rt.accounts.peek(account_id, max_age_s=LIMIT_AGE_S)
            if not fresh or not quotas.take_nowait(GLOBAL, self.rt.limits.concurrency):
                return  # in claim order: the pass grants this one first
            scope = account_scope(account_id)
            if not quotas.take_nowait(scope, account_limit(account, self.rt.limits.concurrency)):
                quotas.free(GLOBAL)
                continue
            self._hand_line(child, ticket, scope)

    def _hand_line(self, child: str, ticket: Ticket[str], scope: str) -> None:
        """Both slots are taken for ``child``: grant its ticket, or give them back."""
        if child not in self._tickets or not ticket.grant(child):  # gone or stopped waiting meanwhile
            self.rt.quotas.free(scope)
            self.rt.quotas.free(GLOBAL)
            return
        del self._tickets[child]
        self._lines.add(child)
        self._scope_of[child] = scope
        self.rt.dialing.hold(child)

    def _line_ended(self, child: str) -> None:
        """Called in the call actor's own task when its call is over (or it exits without one): the
        line goes to a waiting actor now, not at the next pass."""
        self.rt.dialing.let_go(child)
        self._free_line(child)
        self._grant_now()

    async def _take_global(self, *, force: bool = False) -> bool:
        """The workspace's provider concurrency, shared by every instance (``runtime.concurrency``)."""
        return await self.rt.quotas.take(GLOBAL, self.rt.limits.concurrency, force=force)

    async def _claim(self, picks: list[tuple[Any, str]], now_ms: int) -> None:
        rt = self.rt
        won = await job_store.claim_many([job_id for job_id, _ in picks], rt.instance_id, rt.generation,
                                         rt.lease_until_ms(), now_ms)
        got = {str(job.id) for job in won}
        for job_id, scope in picks:
            if str(job_id) not in got:  # changed meanwhile (another instance, an operator): resync tells
                rt.quotas.free(scope)
                rt.quotas.free(GLOBAL)
        for job in won:
            self._start_child(job, account_scope(job.account_id))

    async def _mark_waiting(self, batch: Batch, reason: str | None) -> None:
        """Record on the batch why its waiting jobs are not being dialed (one write per change)."""
        if self._waiting.get(batch.id, "") == reason:
            return
        await Batch.get_pymongo_collection().update_one({"_id": batch.id}, {"$set": {"waiting_reason": reason}})
        self._waiting[batch.id] = reason

    def _next_due(self, batch: Batch, settings: CallSettings, now: datetime) -> datetime | None:
        first = self.index.earliest(batch.id)
        if first is None:
            return None
        # Waves shape when retries are scheduled, not when an already-due job may start.
        return next_dialable(settings, max(from_epoch_ms(first), now), use_waves=False)

    def _free_slots(self) -> int:
        return self.rt.limits.concurrency - len(self._lines)

    def _free_line(self, child: str) -> None:
        """Once per actor: at the end of its call, or when it exits without one."""
        self._lines.discard(child)
        if (scope := self._scope_of.pop(child, None)) is not None:
            self.rt.quotas.free(scope)
            self.rt.quotas.free(GLOBAL)

    async def _start_resumed(self, jobs: list[Job]) -> None:
        """Jobs taken back from a dead process, their slots taken per account in bulk (one grant write
        per scope, not one every few jobs). A call one of them may have placed exists at the provider
        whatever the limits say, so its slot is counted anyway; one that has yet to dial needs a free
        slot, and without one its actor puts it back to wait."""
        quotas, concurrency = self.rt.quotas, self.rt.limits.concurrency
        by_account: dict[str, list[Job]] = {}
        for job in jobs:
            by_account.setdefault(job.account_id, []).append(job)
        for account_id, group in by_account.items():
            scope = account_scope(account_id)
            limit = account_limit(await self.rt.accounts.get(account_id), concurrency)
            live = [job for job in group if has_open_attempt(job)]
            fresh = [job for job in group if not has_open_attempt(job)]
            await quotas.take_many(GLOBAL, concurrency, len(live), force=True)
            await quotas.take_many(scope, limit, len(live), force=True)
            for job in live:
                self._start_child(job, scope)
            lines = await quotas.take_many(GLOBAL, concurrency, len(fresh))
            slots = await quotas.take_many(scope, limit, lines)
            for _ in range(lines - slots):
                quotas.free(GLOBAL)
            for i, job in enumerate(fresh):
                self._start_child(job, scope if i < slots else None)

    def _start_child(self, job: Job, scope: str | None, *, ahead: bool = False) -> None:
        """``ahead``: claimed with every line busy; the actor makes its checks and waits for a line."""
        # Unique child names: a released job can be claimed again before its previous actor has exited.
        self._started += 1
        job_id = str(job.id)
        child = f"call-{job_id}-{self._started}"
        self.in_flight[job_id] = child
        ticket: Ticket[str] | None = None
        if ahead:
            ticket = Ticket(on_wait=lambda: self.ref.tell_nowait(LineWanted(child)))
            self._tickets[child] = (ticket, job.account_id)
        else:
            self._lines.add(child)
            self.rt.dialing.hold(child)
        if scope is not None:
            self._scope_of[child] = scope
        self.index.discard(job.id)
        def call_over() -> None:
            self._line_ended(child)
            self.ref.tell_nowait(LineFree(child))

        def dialed() -> None:
            self.rt.dialing.let_go(child)
            self.ref.tell_nowait(Dialed(child))

        def exited(name: str, exc: BaseException | None) -> None:
            self._tickets.pop(name, None)
            self._line_ended(name)
            self.ref.tell_nowait(CallFinished(job_id, name))

        actor = CallActor(self.rt, job.id, job=job, on_release=self.released, slot_held=scope is not None,
                          on_call_ended=call_over, ticket=ticket, on_dialed=dialed, dial_key=child)
        self.calls.start_child(child, actor.run, policy=RestartPolicy.TRANSIENT, on_exit=exited)

    async def _nothing_left(self) -> bool:
        batches, _ = await self._current_view()
        active = [b.id for b in batches if b.status == BatchStatus.ACTIVE]
        states = [s.value for s in (*DUE_STATES, JobState.IN_FLIGHT)]
        rows = await Job.get_pymongo_collection().aggregate(
            [{"$match": {"batch_id": {"$in": active}, "state": {"$in": states}}}, {"$count": "n"}])
        counted = [row async for row in rows]
        return not counted or counted[0].get("n", 0) == 0  # MongoDB yields no row for zero, nx-27017 {n: 0}
