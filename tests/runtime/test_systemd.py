"""sd_notify from a real ``speechai run`` process to a real AF_UNIX datagram socket, as systemd listens."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechai.runtime import systemd
from tests.test_startup_db_wait import receive_until


def _receive(sock: socket.socket, until: float) -> list[str]:
    out = []
    while time.monotonic() < until:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return out


def _wait_for(sock: socket.socket, message: str, timeout: float, seen: list[str]) -> None:
    receive_until(sock, lambda got: got[-1] == message, timeout, seen)


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


def test_waiting_status_pushes_the_start_timeout_past_the_next_attempt() -> None:
    message = systemd.waiting_status("MongoDB at db1:27017", 3, 2.0)
    status, extend = message.split("\n")
    assert status == "STATUS=waiting for MongoDB at db1:27017 (attempt 3, next in 2 s)"
    assert extend == f"EXTEND_TIMEOUT_USEC={int((2.0 + systemd.ATTEMPT_MARGIN_S) * 1_000_000)}"


def test_supervised_only_with_a_notify_socket(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.supervised()
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    assert systemd.supervised()


UNIT = Path(__file__).resolve().parents[2] / "deploy" / "speechai.service"


def unit_settings(text: str) -> dict[tuple[str, str], list[str]]:
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault((section, key), []).append(value)
    return settings


def test_unit_survives_a_long_outage_and_keeps_its_data_private() -> None:
    s = unit_settings(UNIT.read_text())
    assert s[("Unit", "StartLimitIntervalSec")] == ["0"]  # only [Unit] honours it
    assert ("Service", "StartLimitIntervalSec") not in s and ("Service", "StartLimitBurst") not in s
    assert "SPEECHAI_RUNTIME_INSTANCE_ID=%H" in s[("Service", "Environment")]
    assert s[("Service", "SuccessExitStatus")] == ["143"]  # SIGTERM while waiting for MongoDB
    for key, value in [("LimitNOFILE", "65536"), ("UMask", "0077"), ("NoNewPrivileges", "yes"),
                       ("ProtectSystem", "strict"), ("PrivateTmp", "yes"), ("StateDirectoryMode", "0700"),
                       ("ReadWritePaths", "/var/lib/speechai"), ("Type", "notify")]:
        assert s[("Service", key)] == [value], key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The installed paths and user do not exist here: point them at this checkout and the current user.
    speechai = Path(sys.executable).with_name("speechai")
    text = UNIT.read_text().replace("/opt/speechai/.venv/bin/speechai", str(speechai))
    text = text.replace("User=speechai", "User=root").replace("Group=speechai", "Group=root")
    unit = tmp_path / "speechai.service"
    unit.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    report = [line for line in (out.stdout + out.stderr).splitlines()
              if str(unit) in line or "speechai.service" in line]
    assert out.returncode == 0 and report == [], out.stdout + out.stderr
