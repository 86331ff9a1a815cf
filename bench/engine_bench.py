"""Engine benchmark: the runtime as a black box, driven only through processes, HTTP and the database.

Every scenario starts its own embedded MongoDB-wire server (nx-27017), a counting wire proxy
(``bench/wire_proxy.py``) between the runtime and the server, and the Retell simulator
(``speechai simulator``) as separate processes; loads synthetic debtors with ``speechai load``
(the project's own loader and schema); then runs ``speechai run`` on the real clock with webhooks on
and measures from outside. Definitions of every number are in docs/performance.md.

    .venv/bin/python bench/engine_bench.py --calls 200 --claim-sizes 1000,10000 --json /tmp/engine.json
    .venv/bin/python bench/engine_bench.py --scenarios refill --json /tmp/refill.json

Scenarios (``--scenarios``, comma-separated; default all):
  ramp     N long calls: time 0 → N in flight, runtime peak RSS, /health p99 while N are in flight
  readopt  after ramp: SIGKILL the runtime with N in flight, restart it with the same instance id,
           time until every in-flight job is tracked again (read from the database)
  refill   10 slots, 200 short calls: slot utilization, refill gap p99, DB commands and get-calls
           per attempt over whole attempts
  claim    time per claim at each of ``--claim-sizes`` pending jobs
  api      GET /batches, /batches/{id}, /jobs/{id} at 200 req/s over the largest claim size
Each wait is bounded: a timeout records what was reached and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPEECHAI = str(BIN / "speechai")
API_KEY = "bench-sim-key"
TOKEN = "bench-control-token"
ACCOUNT, BATCH, INSTANCE, DATABASE = "bench", "bench-batch", "bench-1", "bench"
API_KEY_RATE = 40  # requests/s sent with one API key: below the runtime's default of 50 per key
# Driver housekeeping (server monitoring, handshakes): reported, but not charged to attempts.
MONITORING = frozenset({"hello", "ismaster", "isMaster", "ping", "endSessions", "buildInfo", "buildinfo",
                        "getParameter", "saslStart", "saslContinue"})
# Where the database says which instance tracks an in-flight job (the only schema the bench reads).
JOBS, STATE, IN_FLIGHT, LEASE_OWNER, LEASE_UNTIL = "jobs", "state", "in_flight", "lease.owner", "lease.until_ms"
# The lease's generation: a restarted process of one instance id leases with a higher one. Trees before
# the engine rework have none; there, only a lease written after the kill tells the new process.
LEASE_GEN = "gen"


# ----- small helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rnd(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS of a live process in kB (empty once it is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    return {"n": len(ms), "p50_ms": rnd(percentile(ms, 50)), "p99_ms": rnd(percentile(ms, 99)),
            "max_ms": rnd(max(ms) if ms else None)}


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float, every_s: float = 0.2) -> bool:
    """Poll ``check`` until true; False when ``timeout_s`` passed first (the caller records it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(every_s)
    return await check()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_people_csv(path: Path, people: int) -> Path:
    """Synthetic collection export, one instalment row per person (cached: generation is slow)."""
    if path.exists():
        return path
    from speechai.loader.synthetic import WIDE_HEADERS, wide_collection_rows, write_csv

    tmp = path.with_suffix(".partial")
    write_csv(tmp, WIDE_HEADERS, wide_collection_rows(people, instalments=(1, 1)))
    tmp.replace(path)
    return path


# ----- one campaign environment: database, proxy, simulator, loaded batch, runtime --------------------


@dataclass
class Campaign:
    jobs: int
    concurrency: int
    sim_args: list[str]  # outcome rates and durations
    max_call_duration_s: int = 7200
    sim_concurrency: int | None = None  # default: twice the runtime's


@dataclass
class Env:
    root: Path
    campaign: Campaign
    args: argparse.Namespace
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    mongo: Any = None  # speechai.store.embedded.EmbeddedMongo of the tree under test
    nx_uri: str = ""
    runtime_uri: str = ""
    sim_url: str = ""
    control_port: int = 0
    runtime_started_at: float = 0.0  # wall clock, epoch seconds
    http: aiohttp.ClientSession | None = None

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def proxy_stats(self) -> Path:
        return self.root / "wire-counts.json"

    async def __aenter__(self) -> Env:
        shutil.rmtree(self.root, ignore_errors=True)  # a kept earlier run's database must not be reused
        self.root.mkdir(parents=True)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            await self._start_services()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in ("runtime", "simulator", "proxy"):
            self.stop_process(name)
        if self.mongo is not None:
            await asyncio.to_thread(self.mongo.stop)
        if self.http is not None:
            await self.http.close()
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    async def _start_services(self) -> None:
        from speechai.store.embedded import EmbeddedMongo

        self.mongo = EmbeddedMongo(self.root / "db")
        self.nx_uri = await asyncio.to_thread(self.mongo.start)
        self.runtime_uri = self.nx_uri
        if not self.args.direct_db:
            upstream = f"127.0.0.1:{self.mongo.port}"
            line = self.spawn("proxy", [sys.executable, str(ROOT / "bench" / "wire_proxy.py"), "--upstream", upstream,
                                        "--stats", str(self.proxy_stats)], ready_prefix="listening ")
            self.runtime_uri = f"mongodb://{line.split()[1]}/?directConnection=true"
        self.control_port = free_port()
        c = self.campaign
        self.sim_url = self.spawn("simulator", [
            SPEECHAI, "simulator", "--port", "0", "--api-key", API_KEY, "--speed", "1", "--log-level", "warning",
            "--concurrency", str(c.sim_concurrency or 2 * c.concurrency),
            "--webhook-url", f"{self.control_url}/webhooks/retell", *c.sim_args,
        ], ready_prefix="http://")
        self.write_config()
        await self.load_jobs()

    def spawn(self, name: str, cmd: list[str], *, ready_prefix: str, timeout_s: float = 30) -> str:
        """Start a helper process and return its first stdout line starting with ``ready_prefix``."""
        log = open(self.root / f"{name}.log", "ab")  # the child keeps it open
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                env=self.child_env(), start_new_session=True)
        log.close()
        self.procs[name] = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode().strip()
            if line.startswith(ready_prefix):
                return line
            if not line and proc.poll() is not None:
                break
        raise RuntimeError(f"{name} did not start: see {self.root / f'{name}.log'}")

    def stop_process(self, name: str, timeout_s: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def child_env(self, **extra: str) -> dict[str, str]:
        # Inherited SPEECHAI_* variables would change the campaign (or be refused as unknown keys).
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPEECHAI_") and k != "RETELL_API_KEY"}
        env["PYTHONUNBUFFERED"] = "1"
        if self.args.source is not None:
            env["PYTHONPATH"] = str(self.args.source)  # ahead of the installed (editable) package
        return env | extra

    @property
    def config_path(self) -> Path:
        return self.root / "bench.toml"

    def write_config(self) -> None:
        c = self.campaign
        csv = write_people_csv(self.args.work_dir / f"people-{c.jobs}.csv", c.jobs)
        settings = {
            "max_call_duration_s": c.max_call_duration_s, "ring_timeout_s": 30, "max_attempts": 3,
            "allowed_hours": [{"start": "00:00", "end": "23:59:59"}], "days_of_week": [1, 2, 3, 4, 5, 6, 7],
            "timezone": "America/Santiago",
        }
        lines = [
            f"data_dir = {toml_value(str(self.root / 'runtime'))}",
            "[mongo]", f"database = {toml_value(DATABASE)}",
            "[retell]", 'agent_id = "agent_bench"', 'from_number = "+566001234567"', "timeout_s = 15",
            "[runtime]", 'clock = "real"', f"lease_ttl_s = {toml_value(self.args.lease_ttl_s)}",
            *([f"ready_ahead = {self.args.ready_ahead}"] if self.args.ready_ahead is not None else []),
            "[logging]", f"level = {toml_value(self.args.log_level)}", 'format = "json"',
            f"file = {toml_value(str(self.root / 'runtime.jsonl'))}",
            "[[batches]]", f"file = {toml_value(str(csv))}", f"account = {toml_value(ACCOUNT)}",
            f"batch_id = {toml_value(BATCH)}", 'format = "collection"',
            f"call_settings = {toml_value(settings)}",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    async def load_jobs(self) -> None:
        t = time.monotonic()
        env = self.child_env(SPEECHAI_MONGO_URI=self.nx_uri)  # straight to the server: loads are not counted
        proc = await asyncio.to_thread(
            subprocess.run, [SPEECHAI, "load", "--config", str(self.config_path)], env=env,
            capture_output=True, text=True, check=False, timeout=self.args.load_timeout_s)
        if proc.returncode:
            raise RuntimeError(f"speechai load failed ({proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}")
        self.load_s = time.monotonic() - t
        await asyncio.to_thread(self._open_campaign)

    def _open_campaign(self) -> None:
        """What the loader cannot express: the account's concurrency and no holiday calendar (a run on a
        public holiday would otherwise dial nobody)."""
        with MongoClient(self.nx_uri) as client:
            db = client[DATABASE]
            db.accounts.update_one({"_id": ACCOUNT}, {"$set": {"max_concurrent_calls": self.campaign.concurrency}})
            db.batches.update_one({"_id": BATCH}, {"$set": {"call_settings.holidays_country": None}})
            self.jobs_loaded = next(db[JOBS].aggregate([{"$count": "n"}]), {}).get("n", 0)

    def start_runtime(self) -> subprocess.Popen[bytes]:
        env = self.child_env(
            SPEECHAI_MONGO_URI=self.runtime_uri, SPEECHAI_RETELL_BASE_URL=self.sim_url, RETELL_API_KEY=API_KEY,
            SPEECHAI_CONTROL_TOKEN=TOKEN, SPEECHAI_CONTROL_PORT=str(self.control_port),
            SPEECHAI_RUNTIME_CONCURRENCY=str(self.campaign.concurrency), SPEECHAI_RUNTIME_INSTANCE_ID=INSTANCE,
        )
        log = open(self.root / "runtime.out", "ab")  # the child keeps it open
        self.runtime_started_at = time.time()
        proc = subprocess.Popen([SPEECHAI, "run", "--config", str(self.config_path)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        self.procs["runtime"] = proc
        return proc

    def runtime_failure(self) -> str | None:
        proc = self.procs.get("runtime")
        if proc is None or proc.poll() is None:
            return None
        tail = (self.root / "runtime.out").read_text(errors="replace")[-1500:]
        return f"runtime exited with code {proc.returncode}: {tail.strip()}"

    def runtime_warnings(self, keep: int = 5) -> dict[str, int]:
        """The runtime's most frequent warning/error events (its JSON log), to explain a timeout."""
        counts: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in (self.root / "runtime.jsonl").read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("level") in ("warning", "error", "critical"):
                        key = f"{event.get('level')} {event.get('event')}"
                        counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:keep])

    def runtime_log_size(self) -> int:
        try:
            return (self.root / "runtime.jsonl").stat().st_size
        except OSError:
            return 0

    def runtime_events(self, name: str, *, after_byte: int = 0) -> list[dict[str, Any]]:
        """The runtime's JSON log events called ``name``, written after ``after_byte`` of the log."""
        events = []
        with contextlib.suppress(OSError), open(self.root / "runtime.jsonl", "rb") as log:
            log.seek(after_byte)
            for line in log.read().decode(errors="replace").splitlines():
                if f'"{name}"' in line:
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if event.get("event") == name:
                            events.append(event)
        return events

    async def get_json(self, url: str, **kwargs: Any) -> Any:
        assert self.http is not None
        async with self.http.get(url, **kwargs) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def sim_stats(self) -> dict[str, Any]:
        return await self.get_json(f"{self.sim_url}/_sim/stats")

    async def sim_calls(self) -> list[dict[str, Any]]:
        return await self.get_json(f"{self.sim_url}/_sim/calls", timeout=aiohttp.ClientTimeout(total=120))

    def wire_counts(self) -> dict[str, Any]:
        try:
            return json.loads(self.proxy_stats.read_text())
        except (OSError, ValueError):
            return {"messages": 0, "commands": {}}

    async def job_states(self) -> dict[str, Any]:
        """Jobs per state, and the most frequent waiting/last reasons: why a run stalled, if it did."""
        def read(db: Any) -> dict[str, Any]:
            groups = db[JOBS].aggregate([{"$group": {"_id": f"${STATE}", "n": {"$sum": 1}}}])
            states = {str(d["_id"]): d["n"] for d in groups}
            reasons: dict[str, int] = {}
            for d in db[JOBS].find({STATE: {"$ne": "done"}}, {"waiting_reason": 1, "last_reason": 1}).limit(2000):
                key = str(d.get("waiting_reason") or d.get("last_reason"))[:120]
                reasons[key] = reasons.get(key, 0) + 1
            return {"states": states, "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5])}
        return await self.db(read)

    def db(self, fn: Callable[[Any], Any]) -> Awaitable[Any]:
        """Run ``fn(database)`` on a short-lived client straight to the server (not through the proxy)."""
        def call() -> Any:
            with MongoClient(self.nx_uri) as client:
                return fn(client[DATABASE])
        return asyncio.to_thread(call)


class HealthProbe:
    """``GET /health`` every 50 ms, one at a time: the runtime's loop lag as seen from outside."""

    def __init__(self, env: Env, every_s: float = 0.05, timeout_s: float = 2.0) -> None:
        self.env, self.every_s, self.timeout_s = env, every_s, timeout_s
        self.samples: list[tuple[float, float]] = []  # (monotonic send time, latency ms; timeout = timeout_s)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        assert self.env.http is not None
        url, timeout = f"{self.env.control_url}/health", aiohttp.ClientTimeout(total=self.timeout_s)
        next_at = time.monotonic()
        while True:
            sent = time.monotonic()
            try:
                async with self.env.http.get(url, timeout=timeout) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok or self.samples:  # before the first answer the endpoint is simply not up yet
                self.samples.append((sent, (time.monotonic() - sent) * 1000 if ok else self.timeout_s * 1000))
            next_at += self.every_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> HealthProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def between(self, start: float, end: float) -> list[float]:
        return [ms for t, ms in self.samples if start <= t <= end]

    async def wait_up(self, env: Env, timeout_s: float) -> bool:
        async def up() -> bool:
            if env.runtime_failure():
                raise RuntimeError(env.runtime_failure())
            return bool(self.samples)
        return await wait_until(up, timeout_s, 0.1)


class PlacedCounter:
    """How many ``call_placed`` events the runtime has logged; each look reads only what the log gained."""

    def __init__(self, env: Env) -> None:
        self.env, self.offset, self.count = env, 0, 0

    def reached(self, n: int) -> bool:
        size = self.env.runtime_log_size()
        if size > self.offset:
            with open(self.env.root / "runtime.jsonl", "rb") as log:
                log.seek(self.offset)
                gained = log.read(size - self.offset)
            cut = gained.rfind(b"\n") + 1  # a line still being written is read next time
            self.count += gained[:cut].count(b'"event": "call_placed"')
            self.offset += cut
        return self.count >= n


def created_sorted(calls: Iterable[dict[str, Any]]) -> list[int]:
    return sorted(c["created_ms"] for c in calls)


def commands_excluding_monitoring(counts: dict[str, Any]) -> int:
    return sum(n for name, n in counts.get("commands", {}).items() if name not in MONITORING)


def per_attempt(counts: dict[str, Any], attempts: int) -> dict[str, Any]:
    if not attempts:
        return {"attempts": 0}
    def top(table: dict[str, int], keep: int) -> dict[str, float | None]:
        rows = sorted(((n, name) for name, n in table.items()), reverse=True)[:keep]
        return {name: rnd(n / attempts, 2) for n, name in rows}
    return {"attempts": attempts,
            "db_cmds_per_attempt": rnd(commands_excluding_monitoring(counts) / attempts, 2),
            "db_msgs_per_attempt_incl_monitoring": rnd(counts.get("messages", 0) / attempts, 2),
            "by_command_per_attempt": top(counts.get("commands", {}), 12),
            # the same by command and collection ("update jobs"), where the proxy reports it
            "by_target_per_attempt": top(counts.get("targets", {}), 20)}


# ----- scenarios -------------------------------------------------------------------------------------


def long_calls(args: argparse.Namespace) -> list[str]:
    return ["--rates", "long_call=1", "--ring-s", "1", "--talk-s", f"long_call={args.long_call_s}"]


async def scenario_ramp(args: argparse.Namespace, env: Env, out: dict[str, Any]) -> HealthProbe | None:
    """N long calls from an empty start; leaves the runtime running (for readopt) and returns the probe."""
    n = env.campaign.concurrency
    out.update(calls=n, jobs_loaded=env.jobs_loaded, load_s=rnd(env.load_s))
    probe = HealthProbe(env).__enter__()
    env.start_runtime()
    pid = env.procs["runtime"].pid
    peak = 0

    async def ramped() -> bool:
        nonlocal peak
        if failure := env.runtime_failure():
            raise RuntimeError(failure)
        live = (await env.sim_stats())["live_calls"]
        peak = max(peak, live)
        return live >= n
    try:
        await probe.wait_up(env, 60)
        reached = await wait_until(ramped, args.ramp_timeout_s)
    except RuntimeError as exc:
        out["error"] = str(exc)
        probe.__exit__()
        return None
    if not reached:
        out["timed_out"] = f"ramp: {peak} of {n} in flight after {args.ramp_timeout_s}s"
        out["jobs_at_timeout"] = await env.job_states()
        out["runtime_warnings"] = env.runtime_warnings()
    hold_start, hold_start_wall = time.monotonic(), time.time()
    placed = PlacedCounter(env)
    await asyncio.sleep(args.hold_s)
    hold_end = time.monotonic()
    # The simulator counts a call live once it is created; the runtime has placed it once it has saved
    # the call id (its `call_placed`). The first hold can overlap the ramp's last saves; the second
    # starts when all N are placed: the runtime with N calls in flight and nothing left to place.
    async def placed_all() -> bool:
        return placed.reached(n)
    all_placed = await wait_until(placed_all, args.ramp_timeout_s)
    settled_start = time.monotonic()
    await asyncio.sleep(args.hold_s)
    settled_end = time.monotonic()
    stats, calls, counts, mem = await env.sim_stats(), await env.sim_calls(), env.wire_counts(), proc_status(pid)
    created = created_sorted(calls)
    lag = probe.between(hold_start, hold_end)
    settled_lag = probe.between(settled_start, settled_end)
    last_placed = max((_log_time(e) for e in env.runtime_events("call_placed")), default=None)
    out.update(placed_after_live_s=rnd(last_placed - hold_start_wall, 2) if last_placed else None,
               loop_lag_settled_p99_ms=rnd(percentile(settled_lag, 99)) if all_placed else None,
               health_settled=latency_summary(settled_lag))
    out.update(
        in_flight_peak=max(peak, stats["peak_live_calls"]), in_flight_at_end=stats["live_calls"],
        start_to_first_dial_s=rnd(created[0] / 1000 - env.runtime_started_at, 2) if created else None,
        ramp_s=rnd((created[n - 1] - created[0]) / 1000, 2) if len(created) >= n else None,
        rss_mb=rnd(mem.get("VmHWM", 0) / 1024), rss_now_mb=rnd(mem.get("VmRSS", 0) / 1024),
        loop_lag_p99_ms=rnd(percentile(lag, 99)), health_during_hold=latency_summary(lag), hold_s=args.hold_s,
        dials=stats["dials"], sim_requests=stats["requests"],
        get_call_per_dial=rnd(stats["requests"].get("get-call", 0) / max(1, stats["dials"]), 2),
        db=per_attempt(counts, stats["dials"]),
    )
    return probe


async def scenario_readopt(args: argparse.Namespace, env: Env, out: dict[str, Any]) -> None:
    """SIGKILL with N in flight, restart with the same instance id at once, until each job is tracked again."""
    def snapshot(db: Any) -> tuple[dict[Any, int | None], int]:
        docs = list(db[JOBS].find({STATE: IN_FLIGHT}, {"lease": 1}))
        until = max(((d.get("lease") or {}).get("until_ms", 0) for d in docs), default=0)
        return {d["_id"]: (d.get("lease") or {}).get(LEASE_GEN) for d in docs}, until

    # Read before the kill, so the restart follows it at once (reading N leases takes seconds at 5,000).
    # With every slot busy on long calls nothing joins or leaves in flight meanwhile, and a process keeps
    # its generation for life; a heartbeat may still renew a lease, which only the fallback below reads.
    gen_at_kill, until_at_snapshot = await env.db(snapshot)
    ids = list(gen_at_kill)
    live_at_kill = (await env.sim_stats())["live_calls"]
    get_calls_before = (await env.sim_stats())["requests"].get("get-call", 0)
    log_mark = env.runtime_log_size()
    if not ids:
        out["error"] = "nothing in flight to re-adopt"
        return
    env.procs["runtime"].kill()
    env.procs["runtime"].wait()
    t_kill, kill_wall = time.monotonic(), time.time()
    env.start_runtime()
    t_restart = time.monotonic()
    # A lease the killed process wrote runs out by kill + TTL at the latest.
    until_at_kill = max(until_at_snapshot, int((kill_wall + args.lease_ttl_s) * 1000))
    out.update(in_flight_at_kill=len(ids), live_calls_at_kill=live_at_kill, lease_ttl_s=args.lease_ttl_s,
               lease_left_at_kill_s=rnd(until_at_snapshot / 1000 - kill_wall, 2) if until_at_snapshot else None,
               gen_at_kill=sorted({g for g in gen_at_kill.values() if g is not None}))

    def renewed_by_new_process(lease: dict[str, Any], gen_before: int | None) -> bool:
        if lease.get("owner") != INSTANCE:
            return False
        if gen_before is None:  # no generation in this schema: a lease written after the kill
            return lease.get("until_ms", 0) > until_at_kill
        # Re-adopted: a higher generation than the killed process held (only the new one can write
        # it), and a lease that has not run out.
        return int(lease.get(LEASE_GEN) or 0) > gen_before and lease.get("until_ms", 0) > time.time() * 1000

    pending = set(ids)  # not yet seen tracked again

    def check(db: Any, wanted: list[Any]) -> set[Any]:
        """Of ``wanted``, the jobs tracked again: leased by the new process, or already moved on."""
        return {d["_id"] for d in db[JOBS].find({"_id": {"$in": wanted}}, {STATE: 1, "lease": 1})
                if d.get(STATE) != IN_FLIGHT or renewed_by_new_process(d.get("lease") or {}, gen_at_kill[d["_id"]])}

    check_s = 0.0  # duration of the last full check: the resolution of readopt_s

    async def all_tracked() -> bool:
        nonlocal check_s
        if failure := env.runtime_failure():
            raise RuntimeError(failure)
        # One job (by _id, ~1 ms) every poll; the still-pending ones (seconds at 5,000) only once it moved,
        # so the bench's reads do not slow the restart they time.
        canary = next(iter(pending))
        if not await env.db(lambda db: check(db, [canary])):
            return False
        t = time.monotonic()
        pending.difference_update(await env.db(lambda db: check(db, list(pending))))
        check_s = time.monotonic() - t
        return not pending
    limit = args.lease_ttl_s + args.readopt_timeout_s
    try:
        done = await wait_until(all_tracked, limit, 0.1)
    except RuntimeError as exc:
        out["error"] = str(exc)
        return
    t_done = time.monotonic()
    with contextlib.suppress(RuntimeError, aiohttp.ClientError, TimeoutError):
        # After the leases: each re-adopted call's new actor asks the provider about it once, and the
        # scheduler logs jobs_readopted when it has started them all.
        await wait_until(lambda: _readopt_settled(env, get_calls_before, len(ids), log_mark),
                         max(10.0, limit - (t_done - t_restart)), 0.2)
    get_calls_after = (await env.sim_stats())["requests"].get("get-call", 0) - get_calls_before
    readopted = env.runtime_events("jobs_readopted", after_byte=log_mark)
    started = env.runtime_events("runtime_started", after_byte=log_mark)
    out.update(tracked=len(ids) - len(pending), readopt_s=rnd(t_done - t_kill, 2) if done else None,
               readopt_from_restart_s=rnd(t_done - t_restart, 2) if done else None,
               readopt_last_check_s=rnd(check_s, 2),
               restart_to_runtime_started_s=rnd(_log_time(started[0]) - kill_wall, 2) if started else None,
               get_calls_after_restart=get_calls_after,
               jobs_readopted_logged=[e.get("count") for e in readopted],
               jobs_readopted_log_s=rnd(_log_time(readopted[0]) - kill_wall, 2) if readopted else None)
    if not done:
        out["timed_out"] = f"readopt: {len(ids) - len(pending)} of {len(ids)} tracked after {limit:.0f}s"


async def _readopt_settled(env: Env, get_calls_before: int, n: int, log_mark: int) -> bool:
    polled = (await env.sim_stats())["requests"].get("get-call", 0) - get_calls_before
    return polled >= n and bool(env.runtime_events("jobs_readopted", after_byte=log_mark))


def _log_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def refill_metrics(calls: list[dict[str, Any]], slots: int) -> dict[str, Any]:
    """Utilization = busy slot-seconds / (slots × campaign span); the k-th call to end frees the slot
    the (slots+k)-th call starts in, so refill gap k = start[slots+k] - end[k]."""
    if len(calls) <= slots:
        return {}
    starts = sorted(c["created_ms"] for c in calls)
    ends = sorted(c["end_ms"] for c in calls)
    span_ms = ends[-1] - starts[0]
    busy_ms = sum(c["end_ms"] - c["created_ms"] for c in calls)
    gaps = [starts[slots + k] - ends[k] for k in range(len(starts) - slots)]
    return {"slot_utilization": round(busy_ms / (slots * span_ms), 4), "campaign_span_s": rnd(span_ms / 1000, 2),
            "refill_p99_ms": percentile(gaps, 99), "refill_p50_ms": percentile(gaps, 50), "refill_max_ms": max(gaps),
            "mean_call_s": rnd(busy_ms / len(calls) / 1000, 2), "refill_by_burst": refill_by_burst(ends, gaps)}


BURST_MS = 50


def refill_by_burst(ends: list[int], gaps: list[int]) -> dict[str, dict[str, Any]]:
    """The refill gaps grouped by how many other calls ended in the ``BURST_MS`` before the one whose line
    is refilled: lines freed together wait for each other's write-aheads at a server that runs one
    command at a time."""
    groups: dict[str, list[int]] = {}
    for k, gap in enumerate(gaps):
        before = sum(1 for j in range(k) if ends[k] - ends[j] <= BURST_MS)
        groups.setdefault("0" if before == 0 else "1-2" if before <= 2 else "3+", []).append(gap)
    return {name: {"gaps": len(g), "p50_ms": percentile(g, 50), "p99_ms": percentile(g, 99), "max_ms": max(g)}
            for name, g in sorted(groups.items())}


async def scenario_refill(args: argparse.Namespace, out: dict[str, Any]) -> None:
    talk = max(0.1, args.refill_call_s - args.refill_ring_s)
    campaign = Campaign(jobs=args.refill_calls, concurrency=args.refill_slots, max_call_duration_s=600,
                        sim_args=["--rates", "success=1", "--ring-s", str(args.refill_ring_s),
                                  "--talk-s", f"success={talk}"], sim_concurrency=1000)
    async with Env(args.work_dir / "refill", campaign, args) as env:
        out.update(slots=args.refill_slots, calls=args.refill_calls, call_s=args.refill_call_s,
                   jobs_loaded=env.jobs_loaded)
        env.start_runtime()
        ended = 0

        async def finished() -> bool:
            nonlocal ended
            if failure := env.runtime_failure():
                raise RuntimeError(failure)
            stats = await env.sim_stats()
            ended = stats["dials"] - stats["live_calls"]
            if ended < args.refill_calls:
                return False
            # and the runtime has written every outcome (its last commands belong to the attempts)
            return await env.db(lambda db: db[JOBS].find_one({STATE: IN_FLIGHT}) is None)
        limit = args.refill_calls / args.refill_slots * args.refill_call_s * 3 + 60
        try:
            if not await wait_until(finished, limit):
                out["timed_out"] = f"refill: {ended} of {args.refill_calls} calls ended after {limit:.0f}s"
                out["runtime_warnings"] = env.runtime_warnings()
        except RuntimeError as exc:
            out["error"] = str(exc)
            return
        stats, calls, counts = await env.sim_stats(), await env.sim_calls(), env.wire_counts()
        out["jobs_at_end"] = await env.job_states()
        out.update(refill_metrics([c for c in calls if c["status"] in ("ended", "not_connected")],
                                  args.refill_slots))
        attempts = stats["dials"]
        out.update(dials=attempts, sim_requests=stats["requests"], webhooks=stats["webhooks"],
                   get_call_per_attempt=rnd(stats["requests"].get("get-call", 0) / max(1, attempts), 2),
                   db=per_attempt(counts, attempts))


async def scenario_claim(args: argparse.Namespace, size: int, out: dict[str, Any],
                         then: Callable[[Env], Awaitable[None]] | None = None) -> None:
    """claim_ms = mean interval between consecutive dials while the first ``--claim-slots`` slots fill."""
    slots = args.claim_slots
    campaign = Campaign(jobs=size, concurrency=slots, sim_args=long_calls(args))
    async with Env(args.work_dir / f"claim-{size}", campaign, args) as env:
        out.update(pending_jobs=env.jobs_loaded, load_s=rnd(env.load_s), slots=slots)
        env.start_runtime()
        dials = 0

        async def filled() -> bool:
            nonlocal dials
            if failure := env.runtime_failure():
                raise RuntimeError(failure)
            dials = (await env.sim_stats())["dials"]
            return dials >= slots
        try:
            if not await wait_until(filled, args.claim_timeout_s):
                out["timed_out"] = f"claim: {dials} of {slots} dials after {args.claim_timeout_s}s"
                out["jobs_at_timeout"] = await env.job_states()
                out["runtime_warnings"] = env.runtime_warnings()
        except RuntimeError as exc:
            out["error"] = str(exc)
            return
        created = created_sorted(await env.sim_calls())
        if len(created) >= 2:
            k = min(len(created), slots)
            out.update(claim_ms=rnd((created[k - 1] - created[0]) / (k - 1)), intervals=k - 1,
                       start_to_first_dial_s=rnd(created[0] / 1000 - env.runtime_started_at, 2))
        if then is not None:
            await then(env)


async def scenario_api(args: argparse.Namespace, env: Env, out: dict[str, Any]) -> None:
    """Open loop: one request every 1/rate s, round-robin over the three routes, for ``--api-seconds``."""
    ids = await env.db(lambda db: [str(d["_id"]) for d in db[JOBS].find({}, {"_id": 1}).limit(500)])
    routes = {"/batches": ["/batches"], "/batches/{id}": [f"/batches/{BATCH}"],
              "/jobs/{id}": [f"/jobs/{i}" for i in ids]}
    names = list(routes)
    latencies: dict[str, list[float]] = {n: [] for n in names}
    statuses: dict[str, int] = {}
    shapes: set[str] = set()
    assert env.http is not None
    http = env.http
    # The runtime limits each API key to a sustained rate (a token bucket): the load is spread over
    # enough keys that none is refused for its rate, so what is timed is the answer, not a 429.
    keys = await api_keys(env, max(1, -(-int(args.api_rate) // API_KEY_RATE)))
    headers = [{"Authorization": f"Bearer {token}"} for token in keys]

    async def one(name: str, path: str, i: int) -> None:
        sent = time.monotonic()
        try:
            async with http.get(env.control_url + path, headers=headers[i % len(headers)],
                                timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body = await resp.json()
                status = str(resp.status)
                if name == "/batches":  # a list today; may become {"items": [...], "next_cursor": ...}
                    shapes.add("list" if isinstance(body, list) else "items" if "items" in body else "other")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            status = type(exc).__name__
        latencies[name].append((time.monotonic() - sent) * 1000)
        statuses[f"{name} {status}"] = statuses.get(f"{name} {status}", 0) + 1

    total = int(args.api_rate * args.api_seconds)
    tasks = []
    t0 = time.monotonic()
    for i in range(total):
        await asyncio.sleep(max(0.0, t0 + i / args.api_rate - time.monotonic()))
        name = names[i % len(names)]
        paths = routes[name]
        tasks.append(asyncio.create_task(one(name, paths[(i // len(names)) % len(paths)], i)))
    send_s = time.monotonic() - t0
    await asyncio.gather(*tasks)
    everything = [ms for values in latencies.values() for ms in values]
    out.update(jobs=env.jobs_loaded, rate=args.api_rate, seconds=args.api_seconds,
               sent_rate=rnd(total / send_s), api_p99_ms=rnd(percentile(everything, 99)),
               overall=latency_summary(everything), routes={n: latency_summary(v) for n, v in latencies.items()},
               statuses=statuses, batches_shape=sorted(shapes), api_keys=len(keys),
               rate_per_key=rnd(args.api_rate / len(keys)))


async def api_keys(env: Env, n: int) -> list[str]:
    """``n`` admin keys made with the control token (``POST /keys``); the control token itself where
    the runtime has no key management (a tree before it)."""
    assert env.http is not None
    tokens = []
    for i in range(n):
        async with env.http.post(f"{env.control_url}/keys", headers={"Authorization": f"Bearer {TOKEN}"},
                                 json={"role": "admin", "name": f"bench-{i}"}) as resp:
            if resp.status in (404, 405):  # no such route
                return [TOKEN]
            resp.raise_for_status()
            tokens.append((await resp.json())["token"])
    return tokens


# ----- driver ----------------------------------------------------------------------------------------


def git(*argv: str) -> str:
    try:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scenarios = args.scenarios
    result: dict[str, Any] = {"meta": {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": git("rev-parse", "HEAD"),
        "source": str(args.source or ROOT),
        # an exported tree names its commit in a COMMIT file (see docs/performance.md)
        "source_commit": _source_commit(args.source),
        "uncommitted_files": None if args.source else len(git("status", "--porcelain").splitlines()),
        "python": platform.python_version(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0],
        "argv": sys.argv[1:], "wire_proxy": not args.direct_db,
    }}

    async def guarded(name: str, coro: Awaitable[Any], section: dict[str, Any] | None = None) -> Any:
        section = result.setdefault(name, {}) if section is None else section
        t = time.monotonic()
        try:
            return await coro
        except Exception as exc:  # one scenario's failure is recorded; the others still run
            section["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            section["wall_s"] = rnd(time.monotonic() - t)
            section["load_average_after"] = rnd(os.getloadavg()[0], 2)
            print(f"{name}: {json.dumps(section)}", file=sys.stderr, flush=True)
        return None

    if "ramp" in scenarios or "readopt" in scenarios:
        async def ramp_then_readopt() -> None:
            campaign = Campaign(jobs=args.calls, concurrency=args.calls, sim_args=long_calls(args))
            async with Env(args.work_dir / "ramp", campaign, args) as env:
                probe = await scenario_ramp(args, env, result.setdefault("ramp", {}))
                try:
                    if "readopt" in scenarios and probe is not None:
                        await guarded("readopt", scenario_readopt(args, env, result.setdefault("readopt", {})))
                finally:
                    if probe is not None:
                        probe.__exit__()
        await guarded("ramp", ramp_then_readopt())
    if "refill" in scenarios:
        await guarded("refill", scenario_refill(args, result.setdefault("refill", {})))
    sizes = sorted(args.claim_sizes)
    api_on = args.api_jobs or sizes[-1]
    api_done = False
    for size in sizes if "claim" in scenarios else []:
        section = result.setdefault("claim", {}).setdefault(str(size), {})

        async def api_after(env: Env) -> None:
            await guarded("api", scenario_api(args, env, result.setdefault("api", {})))
        wants_api = "api" in scenarios and size == api_on
        await guarded(f"claim {size}", scenario_claim(args, size, section, api_after if wants_api else None),
                      section)
        api_done = api_done or wants_api
    if "api" in scenarios and not api_done:
        async def api_alone() -> None:
            campaign = Campaign(jobs=api_on, concurrency=args.claim_slots, sim_args=long_calls(args))
            async with Env(args.work_dir / "api", campaign, args) as env:
                env.start_runtime()
                probe = HealthProbe(env)
                with probe:
                    await probe.wait_up(env, 60)
                await scenario_api(args, env, result.setdefault("api", {}))
        await guarded("api", api_alone())
    result["summary"] = summarize(result, sizes)
    return result


def _source_commit(source: Path | None) -> str | None:
    if source is None:
        return git("rev-parse", "HEAD")
    marker = source / "COMMIT"
    return marker.read_text().strip() if marker.exists() else None


def summarize(r: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    ramp, readopt, refill = r.get("ramp", {}), r.get("readopt", {}), r.get("refill", {})
    claims = r.get("claim", {})
    small, large = (claims.get(str(sizes[0]), {}), claims.get(str(sizes[-1]), {})) if sizes else ({}, {})
    ratio = None
    if small.get("claim_ms") and large.get("claim_ms") and len(sizes) > 1:
        ratio = round(large["claim_ms"] / small["claim_ms"], 2)
    return {
        "calls": ramp.get("calls"),
        "in_flight_peak": ramp.get("in_flight_peak"), "ramp_s": ramp.get("ramp_s"), "rss_mb": ramp.get("rss_mb"),
        "loop_lag_p99_ms": ramp.get("loop_lag_p99_ms"),
        "loop_lag_settled_p99_ms": ramp.get("loop_lag_settled_p99_ms"), "readopt_s": readopt.get("readopt_s"),
        "db_cmds_per_attempt": refill.get("db", {}).get("db_cmds_per_attempt"),
        "get_call_per_attempt": refill.get("get_call_per_attempt"),
        "slot_utilization": refill.get("slot_utilization"), "refill_p99_ms": refill.get("refill_p99_ms"),
        **{f"claim_ms_{_size_label(s)}": claims.get(str(s), {}).get("claim_ms") for s in sizes},
        f"claim_ms_{_size_label(sizes[-1])}_over_{_size_label(sizes[0])}" if sizes else "claim_ratio": ratio,
        "api_p99_ms": r.get("api", {}).get("api_p99_ms"),
    }


def _size_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=5000, help="ramp/readopt: calls in flight at once (default 5000)")
    ap.add_argument("--json", type=Path, default=None, help="write the result object here (also printed)")
    ap.add_argument("--scenarios", default="ramp,readopt,refill,claim,api",
                    type=lambda s: {x.strip() for x in s.split(",") if x.strip()})
    ap.add_argument("--claim-sizes", default="1000,100000", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--claim-slots", type=int, default=10, help="dials timed per claim size (default 10)")
    ap.add_argument("--api-jobs", type=int, default=None, help="jobs behind the API test (default: largest claim size)")
    ap.add_argument("--api-rate", type=float, default=200.0)
    ap.add_argument("--api-seconds", type=float, default=10.0)
    ap.add_argument("--refill-slots", type=int, default=10)
    ap.add_argument("--refill-calls", type=int, default=200)
    ap.add_argument("--refill-call-s", type=float, default=2.0, help="length of each refill call, ring included")
    ap.add_argument("--refill-ring-s", type=float, default=0.5)
    ap.add_argument("--long-call-s", type=float, default=3600.0, help="talk time of the ramp's long calls")
    ap.add_argument("--hold-s", type=float, default=10.0, help="time N calls are held in flight while measuring")
    ap.add_argument("--lease-ttl-s", type=float, default=30.0, help="runtime.lease_ttl_s (config default 30)")
    ap.add_argument("--ready-ahead", type=int, default=None,
                    help="runtime.ready_ahead: jobs claimed ahead of a free line (default: the config's)")
    ap.add_argument("--ramp-timeout-s", type=float, default=120.0)
    ap.add_argument("--readopt-timeout-s", type=float, default=60.0, help="beyond one lease TTL")
    ap.add_argument("--claim-timeout-s", type=float, default=120.0)
    ap.add_argument("--load-timeout-s", type=float, default=900.0)
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                    help="the runtime's log level (to a file)")
    ap.add_argument("--direct-db", action="store_true", help="no wire proxy (no DB command counts)")
    ap.add_argument("--source", type=Path, default=None,
                    help="tree of the speechai code under test (e.g. a `git archive` export); default: this checkout")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "engine-bench")
    ap.add_argument("--keep", action="store_true", help="keep each scenario's directory (logs, database)")
    args = ap.parse_args(argv)
    unknown = args.scenarios - {"ramp", "readopt", "refill", "claim", "api"}
    if unknown:
        ap.error(f"--scenarios: unknown {sorted(unknown)}; known: ramp, readopt, refill, claim, api")
    return args


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str((args.source or ROOT).resolve()))  # the embedded server and the file generator
    args.work_dir.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
