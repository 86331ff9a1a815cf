"""sd_notify from a real ``speechai run`` process to a real AF_UNIX datagram socket, as systemd listens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from speechai.runtime import systemd


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # AF_UNIX paths are limited to ~108 bytes: pytest's tmp_path can be longer.
    short = tempfile.mkdtemp(prefix="sd")
    path = os.path.join(short, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(short)


def _receive(sock: socket.socket, until: float) -> list[str]:
    out = []
    while time.monotonic() < until:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return out


def _wait_for(sock: socket.socket, message: str, timeout: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if seen[-1] == message:
            return
    raise AssertionError(f"no {message} within {timeout}s; got {seen}")


def test_notify_is_a_no_op_without_systemd(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval_s() is None


def test_watchdog_interval_is_half_the_timeout_and_only_for_our_pid(monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval_s() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval_s() is None


@pytest.mark.slow
def test_real_process_sends_ready_watchdog_and_stopping(notify_socket, tmp_path: Path) -> None:
    sock, path = notify_socket
    config = tmp_path / "config.toml"
    # Embedded database and in-process simulator; a long lease so the watchdog, not the lease, sets the pace.
    config.write_text(f"""
data_dir = "{tmp_path / 'var'}"
[runtime]
lease_ttl_s = 30
[control]
port = 0
[logging]
file = "{tmp_path / 'runtime.log'}"
""")
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "SPEECHAI_CRASH_POINTS")}
    env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000", SPEECHAI_CONTROL_TOKEN="t")
    proc = subprocess.Popen([sys.executable, "-m", "speechai.cli", "run", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen: list[str] = []
        _wait_for(sock, "READY=1", 30, seen)
        # WatchdogSec=2 → a ping at least every second; three seconds must bring several.
        pings = [m for m in _receive(sock, time.monotonic() + 3.2) if m == "WATCHDOG=1"]
        assert len(pings) >= 3, f"only {len(pings)} WATCHDOG=1 in 3 s with WATCHDOG_USEC=2000000"
        proc.send_signal(signal.SIGTERM)
        _wait_for(sock, "STOPPING=1", 15, seen)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the embedded database was stopped with the service (its state file is removed on a clean stop)
    assert not (tmp_path / "var" / "nx-27017.json").exists()
