"""Prometheus metrics of one runtime instance, served at ``GET /metrics`` (text format 0.0.4).

Where each figure comes from, so none needs a change in the actors:

- event counters (calls placed/finished, jobs released, webhooks, suspensions, pauses, warnings and
  errors by event name) from the structlog event stream (``observability.events``), counting only
  this instance's events (those bound with its ``instance`` id) and the unbound ones of the process;
- dial latency from timing ``create_phone_call`` on the instance's Retell client, scheduler pass time
  from timing the scheduler's ``fill`` (both wrapped on the objects, not in their classes);
- DB operation latency from a PyMongo command listener, registered when this module is imported, so
  it sees every client created afterwards (the runtime's is created after the service module loads);
- event-loop lag from a small task that sleeps 0.5 s and measures how late it wakes;
- gauges (calls in flight, slots in use vs limit, account balances, jobs per batch and state, the age
  of the last webhook) read at scrape time from the instance and the database.

Webhook lag is observed from ``webhook`` events that carry ``lag_ms`` (the provider's signature time to
receipt); until the webhook receiver logs it, only the age of the last webhook is exported.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pymongo import monitoring

from speechai.api.openapi import documented
from speechai.observability import events
from speechai.store.models import Account, Batch, BatchStatus, Job, JobState

LOOP_PROBE_S = 0.5
LOOP_IDLE_STOP_S = 600.0  # the lag probe stops this long after the last scrape (and restarts on the next)
DIAL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
PASS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5)
WEBHOOK_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
COUNTED_EVENTS = {"call_placed", "call_finished", "job_released", "webhook", "account_suspended", "batch_paused"}


class _DbListener(monitoring.CommandListener):
    """Command durations for every live ``RuntimeMetrics``; called on the driver's path: cheap, never raises."""

    def __init__(self) -> None:
        self.sinks: weakref.WeakSet[RuntimeMetrics] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _each(self) -> list[RuntimeMetrics]:
        with self._lock:
            return list(self.sinks)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        for sink in self._each():
            sink.db_seconds.labels(event.command_name).observe(event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        for sink in self._each():
            sink.db_seconds.labels(event.command_name).observe(event.duration_micros / 1e6)
            sink.db_failures.labels(event.command_name).inc()


DB_LISTENER = _DbListener()
monitoring.register(DB_LISTENER)


class RuntimeMetrics:
    """One instance's metrics in their own registry (several instances may share a test process)."""

    def __init__(self, *, instance_id: str, rt: Any = None, scheduler: Any = None) -> None:
        self.instance_id = instance_id
        self.rt = rt
        self.scheduler = scheduler
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.calls_placed = Counter("speechai_calls_placed", "Calls the provider accepted", registry=r)
        self.calls_finished = Counter("speechai_calls_finished", "Calls finished, by outcome class and success",
                                      ["outcome", "success"], registry=r)
        self.jobs_released = Counter("speechai_jobs_released", "Jobs released by a call actor, by new state",
                                     ["state"], registry=r)
        self.webhooks = Counter("speechai_webhooks", "Provider webhooks accepted, by event", ["event"], registry=r)
        self.suspensions = Counter("speechai_account_suspensions", "Accounts suspended for credit", registry=r)
        self.pauses = Counter("speechai_batch_pauses", "Batches paused by the runtime", registry=r)
        self.problems = Counter("speechai_log_problems", "Warnings and errors logged, by level and event name",
                                ["level", "event"], registry=r)
        self.dial_seconds = Histogram("speechai_dial_seconds", "create-phone-call round trip",
                                      ["result"], buckets=DIAL_BUCKETS, registry=r)
        self.pass_seconds = Histogram("speechai_scheduler_pass_seconds", "One scheduler pass (fill)",
                                      buckets=PASS_BUCKETS, registry=r)
        self.loop_lag = Histogram("speechai_event_loop_lag_seconds", "How late a 0.5 s sleep wakes",
                                  buckets=LAG_BUCKETS, registry=r)
        self.loop_lag_last = Gauge("speechai_event_loop_lag_last_seconds", "Latest event-loop lag probe",
                                   registry=r)
        self.db_seconds = Histogram("speechai_db_command_seconds", "MongoDB command latency", ["command"],
                                    buckets=DB_BUCKETS, registry=r)
        self.db_failures = Counter("speechai_db_command_failures", "MongoDB commands that failed", ["command"],
                                   registry=r)
        self.webhook_lag = Histogram("speechai_webhook_lag_seconds", "Provider send to receipt of a webhook",
                                     buckets=WEBHOOK_BUCKETS, registry=r)
        self.webhook_age = Gauge("speechai_webhook_last_age_seconds", "Seconds since the last verified webhook",
                                 registry=r)
        self.in_flight = Gauge("speechai_calls_in_flight", "Jobs held by this instance's call actors", registry=r)
        self.slots_used = Gauge("speechai_slots_in_use", "Concurrency slots in use by this instance", ["scope"],
                                registry=r)
        self.slots_limit = Gauge("speechai_slots_limit", "Concurrency limit of the scope", ["scope"], registry=r)
        self.balance = Gauge("speechai_account_balance_cents", "Credit balance (credits plans)", ["account"],
                             registry=r)
        self.minutes = Gauge("speechai_account_minutes_remaining", "Minutes remaining (minutes plans)", ["account"],
                             registry=r)
        self.reserved = Gauge("speechai_account_reserved_cents", "Credit held for calls in progress", ["account"],
                              registry=r)
        self.suspended = Gauge("speechai_account_suspended", "1 while the account is suspended", ["account"],
                               registry=r)
        self.batch_jobs = Gauge("speechai_batch_jobs", "Jobs per batch and state", ["batch", "state"], registry=r)
        self._probe: asyncio.Task[None] | None = None
        self._last_scrape = time.monotonic()
        self._wrap()
        events.subscribe(self)
        with DB_LISTENER._lock:
            DB_LISTENER.sinks.add(self)

    # --- feeds ------------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        owner = event.get("instance")
        if owner is not None and owner != self.instance_id:
            return
        name = str(event.get("event", ""))
        level = str(event.get("level", "info")).lower()
        if name == "call_placed":
            self.calls_placed.inc()
        elif name == "call_finished":
            self.calls_finished.labels(str(event.get("outcome")), str(bool(event.get("success"))).lower()).inc()
        elif name == "job_released":
            self.jobs_released.labels(str(event.get("state"))).inc()
        elif name == "webhook":
            self.webhooks.labels(str(event.get("webhook_event"))).inc()
            if isinstance(lag := event.get("lag_ms"), int | float) and lag >= 0:
                self.webhook_lag.observe(lag / 1000)
        elif name == "account_suspended":
            self.suspensions.inc()
        elif name == "batch_paused":
            self.pauses.inc()
        elif name == "runtime_stopped":
            self.stop_probe()
        if level in ("warning", "error", "critical", "exception"):
            self.problems.labels("error" if level in ("critical", "exception") else level, name[:64]).inc()

    def _wrap(self) -> None:
        """Time the instance's create-call and scheduler pass by wrapping them on the objects."""
        retell = getattr(self.rt, "retell", None)
        if retell is not None and not getattr(retell.create_phone_call, "_timed", False):
            retell.create_phone_call = _timed(retell.create_phone_call, self._observe_dial)
        if self.scheduler is not None and not getattr(self.scheduler.fill, "_timed", False):
            self.scheduler.fill = _timed(self.scheduler.fill, lambda s, _ok: self.pass_seconds.observe(s))

    def _observe_dial(self, seconds: float, error: BaseException | None) -> None:
        self.dial_seconds.labels("ok" if error is None else type(error).__name__).observe(seconds)

    # --- event-loop lag ---------------------------------------------------------------------------

    def start_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_loop())

    def stop_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    async def _probe_loop(self) -> None:
        while time.monotonic() - self._last_scrape < LOOP_IDLE_STOP_S:
            started = time.monotonic()
            await asyncio.sleep(LOOP_PROBE_S)
            lag = max(0.0, time.monotonic() - started - LOOP_PROBE_S)
            self.loop_lag.observe(lag)
            self.loop_lag_last.set(lag)

    # --- scrape -----------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Gauges read now, from the instance and the database."""
        self._last_scrape = time.monotonic()
        self.start_probe()
        rt, scheduler = self.rt, self.scheduler
        if scheduler is not None:
            self.in_flight.set(len(scheduler.in_flight))
        if rt is not None and rt.last_webhook_wall is not None:
            self.webhook_age.set(max(0.0, rt.wall.now().timestamp() - rt.last_webhook_wall))
        for gauge in (self.balance, self.minutes, self.reserved, self.suspended, self.slots_used, self.slots_limit,
                      self.batch_jobs):
            gauge.clear()  # accounts and batches that are gone leave no stale series
        if rt is not None:
            self.slots_used.labels("global").set(rt.quotas.in_use("global"))
            self.slots_limit.labels("global").set(rt.limits.concurrency)
        async for acc in Account.get_pymongo_collection().find({}, {"plan": 1, "balance_cents": 1, "reserved_cents": 1,
                                                                    "minutes_balance_ms": 1, "suspended_reason": 1,
                                                                    "max_concurrent_calls": 1}):
            name = str(acc["_id"])
            self.balance.labels(name).set(acc.get("balance_cents", 0))
            self.minutes.labels(name).set(acc.get("minutes_balance_ms", 0) / 60000)
            self.reserved.labels(name).set(acc.get("reserved_cents", 0))
            self.suspended.labels(name).set(1 if acc.get("suspended_reason") else 0)
            scope = f"account:{name}"
            self.slots_limit.labels(scope).set(acc.get("max_concurrent_calls", 20))
            self.slots_used.labels(scope).set(rt.quotas.in_use(scope) if rt is not None else 0)
        await self._batch_counts()

    async def _batch_counts(self) -> None:
        batches = await Batch.get_pymongo_collection().find(
            {"status": {"$ne": BatchStatus.CANCELLED.value}}, {"_id": 1}).to_list()
        states = [s.value for s in JobState]
        for b in batches:
            # Per batch: $match batch_id + $group answers from the (batch_id, state) index.
            rows = await Job.get_pymongo_collection().aggregate([
                {"$match": {"batch_id": b["_id"]}}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}])
            got = {row["_id"]: row["n"] async for row in rows}
            for state in states:
                self.batch_jobs.labels(str(b["_id"]), state).set(got.get(state, 0))

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)


def _timed(method: Any, observe: Any) -> Any:
    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await method(*args, **kwargs)
        except BaseException as exc:
            observe(time.perf_counter() - started, exc)
            raise
        observe(time.perf_counter() - started, None)
        return result

    timed._timed = True  # type: ignore[attr-defined]
    return timed


def metrics_routes(*, instance_id: str, rt: Any = None, scheduler: Any = None) -> list[web.RouteDef]:
    """``GET /metrics`` (behind the control token: configure the scraper with it as a bearer token)."""
    metrics = RuntimeMetrics(instance_id=instance_id, rt=rt, scheduler=scheduler)

    @documented(tag="service", ok_content="text/plain",
                ok_schema={"type": "string", "description": "Prometheus text exposition format 0.0.4"})
    async def handler(request: web.Request) -> web.Response:
        """Prometheus metrics of this instance (text exposition format)."""
        body = await metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    handler.metrics = metrics  # type: ignore[attr-defined]  # for tests and the dashboard
    return [web.get("/metrics", handler)]
