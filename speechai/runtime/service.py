"""Wiring of one runtime instance: database, provider, supervisor tree, control endpoint, shutdown.

Start order: embedded database (if no URI) → Beanie → Retell client (or the in-process simulator) →
control endpoint → scheduler, heartbeat. Stop order is the reverse, the embedded database last.
"""

from __future__ import annotations

import gc
import hashlib
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.abc
import structlog
from pymongo.errors import ConnectionFailure

from actors.clock import Clock, RealClock, SimClock
from actors.supervisor import RestartPolicy, Supervisor
from speechai.agents.routes import agent_routes
from speechai.api.dialing_routes import dialing_routes
from speechai.api.integration_routes import integration_routes
from speechai.api.segment_routes import segment_routes
from speechai.api.upload import upload_routes
from speechai.config import Config, IntegrationsConfig
from speechai.dashboard.routes import dashboard_routes
from speechai.domain.delivery_policy import RetryRules
from speechai.integrations.crm import register_call
from speechai.integrations.delivery import Deliverer, DeliverySettings
from speechai.integrations.worker import IntegrationWorker
from speechai.loader.service import clean_abandoned_loads
from speechai.observability.metrics import metrics_routes
from speechai.reports.routes import report_routes
from speechai.retell.client import RetellClient
from speechai.retell.sim_outcomes import OutcomeRates
from speechai.retell.simulator import RetellSimulator
from speechai.runtime import systemd
from speechai.runtime.context import Runtime, RuntimeLimits
from speechai.runtime.control_api import ControlApi
from speechai.runtime.heartbeat import Heartbeat
from speechai.runtime.scheduler import Scheduler, Wake
from speechai.runtime.webhooks import WebhookReceiver
from speechai.store import accounts, quotas
from speechai.store.db import connect
from speechai.store.embedded import EmbeddedMongo
from speechai.store.instances import next_generation
from speechai.store.models import Job, JobState

log = structlog.get_logger("speechai")
SHUTDOWN_GRACE_S = 10.0


def tune_gc() -> None:
    """Thousands of long-lived call actors make CPython's default collections scan a large heap many
    times a second (full collections of seconds were measured at 5,000 calls in flight): freeze what
    start-up built, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def default_instance_id(data_dir: Path) -> str:
    """Stable across restarts, so a restarted process re-adopts its own calls at once: the host name and
    a digest of the data directory (one instance per data directory: the embedded server locks it)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def integrations_worker(rt: Runtime, ic: IntegrationsConfig) -> IntegrationWorker:
    """Outbound webhooks and the CRM subscriber, fed by the runtime's outbox (docs/integrations.md)."""
    rules = RetryRules(retry_for_s=ic.retry_for_h * 3600, disable_after_failures=ic.disable_after_failures,
                       disable_after_s=ic.disable_after_h * 3600)
    settings = DeliverySettings(allow_private_targets=ic.allow_private_targets, timeout_s=ic.delivery_timeout_s,
                                concurrency=ic.delivery_concurrency, rules=rules)
    deliverer = Deliverer(rt.outbox.now_ms, settings, handlers={"crm": register_call}, owner=rt.instance_id,
                          wall_now=rt.wall.now)
    rt.outbox.on_new = deliverer.wake
    return IntegrationWorker(rt.outbox, deliverer, rt.outbox.now_ms)


def make_clock(config: Config) -> Clock:
    rt = config.runtime
    if rt.clock == "real":
        return RealClock()
    # The edge of the system: wall time is read once here to anchor simulated business time.
    return SimClock(rt.sim_start or datetime.now(UTC), speed=rt.sim_speed)


def control_token(data_dir: Path) -> str:
    """From SPEECHAI_CONTROL_TOKEN, else a random one kept (0600) in the data directory."""
    if token := os.environ.get("SPEECHAI_CONTROL_TOKEN"):
        return token
    path = data_dir / "control-token"
    if path.exists():
        if path.stat().st_mode & 0o077:  # written by an earlier version, or copied in by hand
            path.chmod(0o600)
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    # Created 0600: never readable by another user, not even between a write and a chmod.
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(token)
    return token


@asynccontextmanager
async def database(config: Config) -> AsyncIterator[str]:
    """Yield a MongoDB URI with Beanie initialised; the embedded server is stopped on exit.

    The data directory is made private (0700). Under systemd (``NOTIFY_SOCKET`` set) an unreachable
    MongoDB is waited for without end (back-off 0.5 s doubling to 30 s), each attempt logged and shown in
    the unit's STATUS, so an outage during a restart delays the service instead of exhausting its start
    limit; SIGTERM or SIGINT during the wait exits with status 128 + signal number, nothing having
    started yet. Elsewhere (a terminal, ``speechai load``) a single attempt fails at once.
    """
    import threading

    from pymongo import AsyncMongoClient

    from speechai.store.db import Unreachable
    from speechai.store.embedded import make_private_dir

    make_private_dir(config.data_dir)
    embedded = None
    uri = config.mongo.uri
    if not uri:
        embedded = EmbeddedMongo(config.data_dir)
        uri = await anyio.to_thread.run_sync(embedded.start)
        log.info("embedded_mongo_started", uri=uri, data_dir=str(config.data_dir))
    try:
        # Our own embedded server either answers now or is dead: nothing to wait for.
        max_wait_s = None if systemd.supervised() and embedded is None else 0.0
        waiting = anyio.Event()
        client: AsyncMongoClient | None = None
        failure: Exception | None = None
        stopped_by: int | None = None

        def on_wait(attempt: Unreachable) -> None:
            waiting.set()
            log.warning("database_unreachable", address=attempt.address, attempt=attempt.attempt,
                        next_in_s=attempt.next_in_s, error=attempt.error)
            systemd.notify(systemd.waiting_status(f"MongoDB at {attempt.address}", attempt.attempt,
                                                  attempt.next_in_s))

        async def wait_up(tg: anyio.abc.TaskGroup) -> None:
            nonlocal client, failure
            try:
                client = await connect(uri, config.mongo.database, on_wait=on_wait, max_wait_s=max_wait_s)
            except Exception as exc:  # raised below as itself, not wrapped in the task group's ExceptionGroup
                failure = exc
            tg.cancel_scope.cancel()

        async def stop_on_signal(tg: anyio.abc.TaskGroup) -> None:
            nonlocal stopped_by
            await waiting.wait()  # only once waiting: a quick start leaves signal handling to the caller
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    stopped_by = signum
                    tg.cancel_scope.cancel()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_up, tg)
            if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
                tg.start_soon(stop_on_signal, tg)
        if failure is not None:
            raise failure
        if stopped_by is not None:
            if client is not None:
                await client.close()
            log.warning("database_wait_stopped", signal=signal.Signals(stopped_by).name)
            systemd.notify("STOPPING=1")
            raise SystemExit(128 + stopped_by)
        assert client is not None
        systemd.notify("STATUS=running")
        try:
            if embedded is not None:
                # The data-directory lock makes this the only instance: no load can be in progress.
                if undone := await clean_abandoned_loads():
                    log.warning("abandoned_loads_undone", batches=undone)
            yield uri
        finally:
            await client.close()
    finally:
        if embedded is not None:
            await anyio.to_thread.run_sync(embedded.stop)


@dataclass
class Instance:
    rt: Runtime
    api: ControlApi
    scheduler: Scheduler
    simulator: RetellSimulator | None


async def release_leases(instance_id: str) -> int:
    """On shutdown: expire our leases so the next start (of any instance) adopts the jobs at once.
    Our concurrency grants go too, or the adopter would wait a lease TTL for them."""
    result = await Job.get_pymongo_collection().update_many(
        {"state": JobState.IN_FLIGHT.value, "lease.owner": instance_id}, {"$set": {"lease.until_ms": 0}})
    await quotas.drop_grants(instance_id)
    return result.modified_count


async def run_instance(config: Config, *, until_done: bool = False,
                       on_ready: Callable[[Instance], None] | None = None,
                       stop: anyio.Event | None = None,
                       prepare: Callable[[Clock], Awaitable[None]] | None = None,
                       handle_signals: bool = True,
                       on_stopped: Callable[[], Awaitable[None]] | None = None,
                       clock: Clock | None = None,
                       simulator: RetellSimulator | None = None) -> None:
    """Run until ``stop`` is set, SIGTERM/SIGINT arrives, or (``until_done``) no work is left.
    ``prepare`` runs once the database is up, before any actor starts (e.g. loading batches).
    A caller-owned, already started ``simulator`` (tests) is used as the provider and shares ``clock``."""
    clock = clock or make_clock(config)
    instance_id = config.runtime.instance_id or default_instance_id(config.data_dir)
    stop = stop or anyio.Event()
    async with database(config):
        for account in config.accounts:
            await accounts.configure(account.id, max_concurrent_calls=account.max_concurrent_calls,
                                     daily_call_limit=account.daily_call_limit)
        if prepare is not None:
            await prepare(clock)
        owned = simulator is None
        api_key = simulator.api_key if simulator is not None else config.retell_api_key
        base_url = simulator.base_url if simulator is not None else config.retell.base_url
        if not base_url:
            api_key = api_key or "sim-key"
            simulator = RetellSimulator(api_key=api_key, clock=clock, seed=config.simulator.seed,
                                        concurrency_limit=config.simulator.concurrency,
                                        rates=OutcomeRates(weights=config.simulator.rates) if config.simulator.rates
                                        else None)
            base_url = await simulator.start()
        elif not api_key:
            raise RuntimeError("retell.base_url is set but RETELL_API_KEY is not in the environment")
        try:
            async with RetellClient(base_url, api_key, timeout_s=config.retell.timeout_s,
                                    max_connections=max(100, config.runtime.concurrency // 4)) as retell:
                await _serve(config, clock, retell, instance_id, simulator, api_key, until_done, on_ready, stop,
                             handle_signals)
        finally:
            if simulator is not None and owned:
                with anyio.CancelScope(shield=True):
                    await simulator.stop()
        if on_stopped is not None:
            await on_stopped()


async def _serve(config: Config, clock: Clock, retell: RetellClient, instance_id: str,
                 simulator: RetellSimulator | None, api_key: str, until_done: bool,
                 on_ready: Callable[[Instance], None] | None, stop: anyio.Event,
                 handle_signals: bool) -> None:
    r = config.runtime
    limits = RuntimeLimits(concurrency=r.concurrency, poll_interval_s=r.poll_interval_s,
                           scheduler_interval_s=r.scheduler_interval_s, lease_ttl_s=r.lease_ttl_s,
                           skip_idle=r.skip_idle and r.clock == "simulated",
                           cents_per_minute=config.retell.cents_per_minute, ready_ahead=r.ready_ahead)
    rt = Runtime(clock=clock, retell=retell, instance_id=instance_id, agent_id=config.retell.agent_id,
                 from_number=config.retell.from_number, limits=limits, done=anyio.Event(),
                 log=log.bind(instance=instance_id), generation=await next_generation(instance_id))
    ic = config.integrations
    async with Supervisor("calls", logger=rt.log) as calls, Supervisor("root", logger=rt.log) as root:
        scheduler = Scheduler(rt, calls, until_done=until_done)
        api = ControlApi(token=control_token(config.data_dir), scheduler_ref=scheduler.ref,
                         webhooks=WebhookReceiver(rt, api_key), instance_id=instance_id, clock=clock,
                         extra_routes=[*upload_routes(clock=clock, report_dir=config.data_dir / "reports",
                                                      default_settings=config.call_settings,
                                                      default_from_number=config.retell.from_number),
                                       *report_routes(clock=clock),
                                       *segment_routes(scheduler_ref=scheduler.ref),
                                       *dialing_routes(clock=clock, default_from_number=config.retell.from_number,
                                                       wake=lambda reason: scheduler.ref.tell_nowait(Wake(reason))),
                                       *agent_routes(clock=clock),
                                       *metrics_routes(instance_id=instance_id, rt=rt, scheduler=scheduler),
                                       *dashboard_routes(instance_id=instance_id, clock=clock, scheduler=scheduler),
                                       *integration_routes(clock=clock, outbox=rt.outbox,
                                                           allow_private_targets=ic.allow_private_targets)],
                         rate_limit_per_s=config.control.rate_limit_per_s,
                         rate_limit_burst=config.control.rate_limit_burst,
                         auth_failures_per_s=config.control.auth_failures_per_s,
                         auth_failure_burst=config.control.auth_failure_burst,
                         max_connections=config.control.max_connections)
        await api.start(config.control.host, config.control.port)
        root.start_child("control-api", api.serve_forever)
        root.start_child("integrations", integrations_worker(rt, ic).run)
        if simulator is not None:
            simulator.webhook_url = f"http://127.0.0.1:{api.port}/webhooks/retell"
        watchdog = systemd.watchdog_interval_s()
        heartbeat = Heartbeat(rt, lambda: list(scheduler.in_flight),
                              on_beat=(lambda: systemd.notify("WATCHDOG=1")) if watchdog else None,
                              max_interval_s=watchdog, last_pass_ms=lambda: getattr(scheduler, "last_pass_ms", None))
        root.start_child("heartbeat", heartbeat.run)
        root.start_child("scheduler", scheduler.run, policy=RestartPolicy.TRANSIENT)
        async with anyio.create_task_group() as tg:
            if handle_signals:  # installed before READY: a SIGTERM from then on always stops gracefully
                await tg.start(_wait_signal, stop)
            systemd.notify("READY=1")
            rt.log.info("runtime_started", control_port=api.port, concurrency=limits.concurrency,
                        generation=rt.generation)
            if on_ready is not None:
                on_ready(Instance(rt=rt, api=api, scheduler=scheduler, simulator=simulator))
            tg.start_soon(_wait_event, rt.done, stop)
            await stop.wait()
            tg.cancel_scope.cancel()
        systemd.notify("STOPPING=1")
        rt.log.info("runtime_stopping")
        with anyio.CancelScope(shield=True):
            await root.shutdown(SHUTDOWN_GRACE_S)  # no new calls from here on
            await calls.shutdown(SHUTDOWN_GRACE_S)
            try:
                released = await release_leases(instance_id)
            except ConnectionFailure as exc:  # the leases simply expire instead
                rt.log.warning("leases_not_released", error=str(exc))
                released = 0
            rt.log.info("runtime_stopped", leases_released=released)


async def _wait_signal(stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                       ) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            stop.set()
            return


async def _wait_event(event: anyio.Event | None, stop: anyio.Event) -> None:
    if event is not None:
        await event.wait()
        stop.set()
