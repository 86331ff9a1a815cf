"""Start-up with MongoDB unreachable waits instead of exiting: ``connect``'s back-off against a closed
port with the real driver, and a real ``speechai run`` process telling a real notify socket about it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from pymongo.errors import ConfigurationError, InvalidURI, ServerSelectionTimeoutError

from actors.supervisor import Backoff
from speechai.store.db import DB_BACKOFF, Unreachable, connect, mongo_address
from speechai.store.embedded import EmbeddedMongo
from speechai.store.models import Account

STATUS_RE = re.compile(r"STATUS=waiting for MongoDB at (\S+) \(attempt (\d+), next in ([\d.]+) s\)\n"
                       r"EXTEND_TIMEOUT_USEC=(\d+)")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quick_uri(port: int) -> str:
    # One attempt fails after 0.3 s instead of the default 5 s: the URI's own setting wins.
    return f"mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=300"


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [DB_BACKOFF.delay(n - 1) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_address_never_carries_credentials() -> None:
    assert mongo_address("mongodb://speechai:s3cret@db1:27017,db2:27017/speechai?replicaSet=rs0") == \
        "db1:27017,db2:27017"
    assert mongo_address("mongodb+srv://u:p@cluster0.example.net/?retryWrites=true") == "cluster0.example.net"


async def test_a_single_attempt_by_default() -> None:
    seen: list[Unreachable] = []
    with pytest.raises(ServerSelectionTimeoutError):
        await connect(quick_uri(closed_port()), "x", on_wait=seen.append)
    assert seen == []


async def test_waits_with_growing_backoff_then_gives_up_after_max_wait() -> None:
    port = closed_port()
    seen: list[Unreachable] = []
    with pytest.raises(ServerSelectionTimeoutError):
        await connect(quick_uri(port), "x", max_wait_s=2.5, backoff=Backoff(initial=0.1, maximum=0.4),
                      on_wait=seen.append)
    assert len(seen) >= 3
    assert [w.attempt for w in seen] == list(range(1, len(seen) + 1))
    assert [w.next_in_s for w in seen[:4]] == [0.1, 0.2, 0.4, 0.4][:len(seen[:4])]
    assert {w.address for w in seen} == {f"127.0.0.1:{port}"}
    assert all("Connect call failed" in w.error or "refused" in w.error for w in seen)


async def test_errors_that_waiting_cannot_fix_are_raised_at_once() -> None:
    seen: list[Unreachable] = []
    with pytest.raises(ConfigurationError, match="multiple hosts"):
        await connect("mongodb://h1:1,h2:2/?directConnection=true", "x", max_wait_s=5, on_wait=seen.append)
    with pytest.raises(InvalidURI):
        await connect("http://not-mongo", "x", max_wait_s=5, on_wait=seen.append)
    assert seen == []


async def test_cancelling_stops_the_wait() -> None:
    seen: list[Unreachable] = []
    with anyio.move_on_after(1.5) as scope:
        await connect(quick_uri(closed_port()), "x", max_wait_s=None, backoff=Backoff(initial=0.2, maximum=0.2),
                      on_wait=seen.append)
    assert scope.cancelled_caught and seen


async def test_connects_once_the_server_comes_up(tmp_path: Path) -> None:
    port = closed_port()
    server = EmbeddedMongo(tmp_path, port=port)
    started = anyio.Event()

    def on_wait(attempt: Unreachable) -> None:
        if attempt.attempt == 2 and not started.is_set():
            started.set()

    async def bring_up() -> None:
        await started.wait()
        await anyio.to_thread.run_sync(server.start)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bring_up)
            client = await connect(quick_uri(port), "waited", max_wait_s=60,
                                   backoff=Backoff(initial=0.2, maximum=1), on_wait=on_wait)
        try:
            await Account(id="acme").insert()  # Beanie is initialised on the server that came up
            assert await Account.get("acme") is not None
        finally:
            await client.close()
    finally:
        server.stop()




def receive_until(sock: socket.socket, done, timeout: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if done(seen):
            return
    raise AssertionError(f"not seen within {timeout}s; got {seen}")


def waiting_attempts(seen: list[str]) -> list[int]:
    return [int(m.group(2)) for msg in seen if (m := STATUS_RE.fullmatch(msg))]


def start_run(tmp_path: Path, notify_path: str, port: int) -> subprocess.Popen[str]:
    """``speechai run`` against MongoDB on ``port`` (closed for now), watchdog every second; outside
    systemd when ``notify_path`` is empty."""
    config = tmp_path / "config.toml"
    config.write_text(f"""
data_dir = "{tmp_path / 'var'}"
[control]
port = 0
[logging]
file = "{tmp_path / 'runtime.log'}"
""")
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "SPEECHAI_CRASH_POINTS")}
    env.update(NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="2000000", SPEECHAI_CONTROL_TOKEN="t",
               SPEECHAI_MONGO_URI=quick_uri(port))
    if not notify_path:
        del env["NOTIFY_SOCKET"], env["WATCHDOG_USEC"]
    return subprocess.Popen([sys.executable, "-m", "speechai.cli", "run", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def log_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_run_waits_for_mongodb_and_starts_when_it_comes_up(notify_socket, tmp_path: Path) -> None:
    sock, path = notify_socket
    port = closed_port()
    proc = start_run(tmp_path, path, port)
    server = EmbeddedMongo(tmp_path / "db", port=port)
    try:
        seen: list[str] = []
        receive_until(sock, lambda s: len(waiting_attempts(s)) >= 3, 20, seen)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert waiting_attempts(seen) == [1, 2, 3]
        first = STATUS_RE.fullmatch(seen[0])
        assert first is not None and first.group(1) == f"127.0.0.1:{port}"
        assert int(first.group(4)) > float(first.group(3)) * 1_000_000  # start timeout pushed past the next try
        server.start()  # MongoDB is back
        receive_until(sock, lambda s: s[-1] == "READY=1", 20, seen)
        assert "STATUS=running" in seen
        # READY=1 goes out just before the runtime's own SIGTERM handler is installed; a second
        # watchdog ping comes from a later turn of the event loop, when it is.
        receive_until(sock, lambda s: s[s.index("READY=1"):].count("WATCHDOG=1") >= 2, 10, seen)
        proc.send_signal(signal.SIGTERM)
        receive_until(sock, lambda s: s[-1] == "STOPPING=1", 15, seen)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    events = log_events(tmp_path / "runtime.log")
    unreachable = [e["attempt"] for e in events if e["event"] == "database_unreachable"]
    assert unreachable[:3] == [1, 2, 3] and "runtime_started" in [e["event"] for e in events]


@pytest.mark.slow
def test_sigterm_while_waiting_stops_cleanly(notify_socket, tmp_path: Path) -> None:
    sock, path = notify_socket
    proc = start_run(tmp_path, path, closed_port())
    try:
        seen: list[str] = []
        receive_until(sock, lambda s: len(waiting_attempts(s)) >= 2, 20, seen)
        proc.send_signal(signal.SIGTERM)
        receive_until(sock, lambda s: s[-1] == "STOPPING=1", 15, seen)
        assert proc.wait(15) == 128 + signal.SIGTERM  # the unit's SuccessExitStatus=143: a clean stop
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "READY=1" not in seen
    events = [e["event"] for e in log_events(tmp_path / "runtime.log")]
    assert events[-1] == "database_wait_stopped" and "database_unreachable" in events


def test_outside_systemd_run_fails_at_once(tmp_path: Path) -> None:
    # A terminal (no NOTIFY_SOCKET): the operator hears about the database now, not after a silent wait.
    proc = start_run(tmp_path, "", closed_port())
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1 and "cannot use the database" in stderr and "Traceback" not in stderr
