"""Real processes for the crash tests: the embedded MongoDB server, the Retell simulator and
``speechai run``, each its own OS process, observed only through the simulator's dial log and the database.

Business time: the runtime and the simulator each run a simulated clock at the same speed but are not
shared, so the campaign's settings make correctness independent of time (every hour of every day is
open, no per-person caps, retry delays of a minute) and ``skip_idle`` is off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from speechai.domain.settings import CallSettings, HourRange, PersonPolicySettings, RetryDelays
from speechai.store.embedded import EmbeddedMongo
from speechai.store.models import FINAL_STATES, Job, Phone

API_KEY = "crash-test-key"
DB_NAME = "speechai"
SPEED = 60.0  # business seconds per real second, for the runtime and the simulator alike
PY = sys.executable

SETTINGS = CallSettings(
    max_attempts=3,
    max_call_duration_s=300,
    ring_timeout_s=30,
    allowed_hours=[HourRange(start=dtime(0), end=dtime(23, 59, 59, 999999))],
    days_of_week=[1, 2, 3, 4, 5, 6, 7],
    timezone="UTC",
    holidays_country=None,
    retry_delay_min=RetryDelays(no_answer=1, voicemail=1, conversation=1, provider_error=1, capacity=1),
    person_policy=PersonPolicySettings(max_calls_per_day=None, max_no_answer_days=None),
)


@dataclass
class Person:
    """Scripted outcomes per phone; ``final`` and ``dials`` (per phone) are what a correct run ends with."""

    phones: Sequence[str]
    script: dict[str, Sequence[str]]
    final: str
    dials: dict[str, int] = field(default_factory=dict)


def standard_people(prefix: str = "5691") -> list[Person]:
    """Eight people whose scripted outcomes end deterministically (max_attempts 3)."""
    def p(n: int) -> str:
        return f"+{prefix}{n:05d}"

    return [
        Person([p(1)], {p(1): ["success"]}, "done", {p(1): 1}),
        Person([p(2)], {p(2): ["no_answer", "success"]}, "done", {p(2): 2}),
        Person([p(3)], {p(3): ["voicemail"]}, "failed", {p(3): 3}),
        Person([p(4), p(40)], {p(4): ["invalid_number"], p(40): ["success"]}, "done", {p(4): 1, p(40): 1}),
        Person([p(5)], {p(5): ["answered", "answered", "success"]}, "done", {p(5): 3}),
        Person([p(6)], {p(6): ["busy", "declined", "no_answer"]}, "failed", {p(6): 3}),
        Person([p(7)], {p(7): ["provider_error", "success"]}, "done", {p(7): 2}),
        Person([p(8)], {p(8): ["success"]}, "done", {p(8): 1}),
    ]


def many_people(count: int, prefix: str = "5692") -> list[Person]:
    """``count`` people who answer on the second try: enough traffic to hit the concurrency limit."""
    out = []
    for i in range(count):
        phone = f"+{prefix}{i:05d}"
        out.append(Person([phone], {phone: ["no_answer", "success"]}, "done", {phone: 2}))
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Campaign:
    """One scripted campaign: database, simulator, seeded jobs, and any number of runtime processes."""

    def __init__(self, root: Path, people: Sequence[Person], *, sim_concurrency: int = 20) -> None:
        self.root = root
        self.people = list(people)
        self.sim_concurrency = sim_concurrency
        self.dial_log = root / "dials.jsonl"
        self.mongo = EmbeddedMongo(root / "db")
        self.sim: subprocess.Popen[bytes] | None = None
        self.sim_url = ""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.runs = 0

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Campaign:
        self.mongo.start()
        self._start_simulator()
        self._seed()
        return self

    def _start_simulator(self) -> None:
        args = [PY, "-m", "speechai.cli", "simulator", "--port", "0", "--speed", str(SPEED),
                "--concurrency", str(self.sim_concurrency), "--dial-log", str(self.dial_log), "--seed", "1"]
        for person in self.people:
            for phone, outcomes in person.script.items():
                args += ["--script", f"{phone}={','.join(outcomes)}"]
        env = {**os.environ, "RETELL_API_KEY": API_KEY}
        out = self.root / "simulator.log"
        with out.open("wb") as log:
            self.sim = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        # it prints its base URL on a line of its own once listening (logs go to the same stream)
        deadline = time.monotonic() + 20
        line = ""
        while not line and time.monotonic() < deadline:
            assert self.sim.poll() is None, f"simulator exited: {out.read_text()[-2000:]}"
            line = next((x for x in out.read_text().splitlines() if x.startswith("http://")), "")
            time.sleep(0.05)
        assert line, "simulator did not print its URL"
        self.sim_url = line

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.sim is not None and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGINT)
            try:
                self.sim.wait(10)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()
        self.mongo.stop()

    def client(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(self.mongo.uri, tz_aware=True, serverSelectionTimeoutMS=20000)

    def _seed(self) -> None:
        now = datetime.now(UTC)
        with self.client() as client:
            db = client[DB_NAME]
            db.accounts.insert_one({"_id": "acme", "name": "Acme", "plan": "unlimited", "balance_cents": 0,
                                    "minutes_balance_ms": 0, "reserved_cents": 0, "reserved_ms": 0,
                                    "spent_cents": 0, "max_concurrent_calls": 20, "daily_call_limit": None,
                                    "suspended_reason": None})
            db.batches.insert_one({"_id": "b1", "account_id": "acme", "name": "crash", "status": "active",
                                   "call_settings": SETTINGS.model_dump(mode="json"), "created_at": now})
            docs = []
            for i, person in enumerate(self.people):
                # model_construct: a Beanie document cannot be instantiated before Beanie is initialised
                job = Job.model_construct(
                          account_id="acme", batch_id="b1", dedup_key=f"acme:b1:{i}", person_key=person.phones[0],
                          name=f"P{i}", phones=[Phone(number=n) for n in person.phones],
                          variables={"name": f"P{i}"}, next_try_at=now, created_at=now, updated_at=now)
                docs.append(job.model_dump(by_alias=True, mode="python", exclude={"id", "revision_id"}))
            db.jobs.insert_many(docs)

    # --- runtime processes ------------------------------------------------------------------------

    def write_config(self, name: str, *, concurrency: int = 4, instance_id: str = "",
                     lease_ttl_s: float = 2.0) -> Path:
        data_dir = self.root / f"rt-{name}"
        data_dir.mkdir(exist_ok=True)
        path = data_dir / "config.toml"
        path.write_text(f"""
data_dir = "{data_dir}"
[mongo]
uri = "{self.mongo.uri}"
database = "{DB_NAME}"
[retell]
base_url = "{self.sim_url}"
timeout_s = 5
[runtime]
instance_id = "{instance_id}"
concurrency = {concurrency}
poll_interval_s = 15
scheduler_interval_s = 30
lease_ttl_s = {lease_ttl_s}
clock = "simulated"
sim_speed = {SPEED}
skip_idle = false
[control]
port = 0
[logging]
level = "info"
format = "json"
file = "{data_dir / 'runtime.log'}"
""")
        return path

    def spawn(self, config: Path, *, crash: str | None = None, until_done: bool = True,
              extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "SPEECHAI_CRASH_POINTS")}
        env["RETELL_API_KEY"] = API_KEY
        env["SPEECHAI_CONTROL_TOKEN"] = "crash-control-token"
        if crash:
            env["SPEECHAI_CRASH_POINTS"] = crash
        env.update(extra_env or {})
        args = [PY, "-m", "speechai.cli", "run", "--config", str(config)]
        if until_done:
            args.append("--until-done")
        self.runs += 1
        err = open(config.parent / f"stderr-{self.runs}.log", "wb")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
        err.close()
        self.procs.append(proc)
        return proc

    def run(self, config: Path, *, crash: str | None = None, timeout: float = 90.0) -> int:
        proc = self.spawn(config, crash=crash)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"speechai run did not finish within {timeout}s (crash={crash})") from None

    def finish(self, config: Path, *, max_runs: int = 3) -> None:
        """Restart without crash points until a run exits 0 (the campaign is done)."""
        codes = []
        for _ in range(max_runs):
            rc = self.run(config)
            codes.append(rc)
            if rc == 0:
                return
        raise AssertionError(f"campaign did not finish cleanly; exit codes {codes}")

    # --- observations -----------------------------------------------------------------------------

    def dials(self) -> list[dict[str, Any]]:
        if not self.dial_log.exists():
            return []
        return [json.loads(line) for line in self.dial_log.read_text().splitlines() if line.strip()]

    def jobs(self) -> list[dict[str, Any]]:
        with self.client() as client:
            jobs = list(client[DB_NAME].jobs.find({}))
        return sorted(jobs, key=lambda j: int(j["dedup_key"].rsplit(":", 1)[1]))  # seeding order

    def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def assert_exactly_once(self, *, expect_scripted: bool = True) -> None:
        """What the simulator dialed and what the database recorded agree, attempt by attempt."""
        dials = self.dials()
        keys = Counter(d["idempotency_key"] for d in dials)
        assert None not in keys, "a dial without idempotency key"
        twice = {k: n for k, n in keys.items() if n > 1}
        assert not twice, f"attempt ids dialed more than once: {twice}"
        by_job: dict[str, list[dict[str, Any]]] = {}
        for d in dials:
            assert d["metadata"]["attempt_id"] == d["idempotency_key"]
            by_job.setdefault(d["metadata"]["job_id"], []).append(d)
        jobs = self.jobs()
        final = {s.value for s in FINAL_STATES}
        assert len(jobs) == len(self.people)
        for job, person in zip(jobs, self.people, strict=True):
            jid = str(job["_id"])
            attempts = job["attempts"]
            assert job["state"] in final, f"job {jid} ({person.phones}) ended {job['state']}: {job['last_reason']}"
            assert job.get("lease") is None, f"job {jid} still leased"
            for a in attempts:
                assert a["outcome"] is not None, f"attempt {a['attempt_id']} of job {jid} left open"
                assert a["placed"] is not None, f"attempt {a['attempt_id']} of job {jid} never resolved"
            placed = {a["attempt_id"]: a for a in attempts if a["placed"]}
            dialed = {d["idempotency_key"]: d for d in by_job.get(jid, [])}
            # every dial is a placed attempt of this job (nothing forgotten) and vice versa (nothing invented)
            assert set(placed) == set(dialed), f"job {jid}: placed {sorted(placed)} vs dialed {sorted(dialed)}"
            for aid, a in placed.items():
                assert a["call_id"] == dialed[aid]["call_id"] and a["phone"] == dialed[aid]["to_number"]
            assert job["attempts_counted"] == sum(1 for a in attempts if a["counted"]), f"job {jid} miscounted"
            assert all(a["placed"] for a in attempts if a["counted"])
            if expect_scripted:
                assert job["state"] == person.final, f"job {jid} {person.phones}: {job['state']} {job['last_reason']}"
                per_phone = Counter(d["to_number"] for d in by_job.get(jid, []))
                assert dict(per_phone) == person.dials, f"job {jid}: dials per phone {dict(per_phone)}"
        stray = set(by_job) - {str(j["_id"]) for j in jobs}
        assert not stray, f"dials for unknown jobs {stray}"

    def throttled(self) -> list[dict[str, Any]]:
        """Attempts the provider refused with 429 (the concurrency limit was exceeded)."""
        return [a for j in self.jobs() for a in j["attempts"] if "429" in (a.get("error") or "")]
