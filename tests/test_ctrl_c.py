"""Ctrl-C in a terminal signals the whole foreground process group: the embedded database must not
die before the runtime has checkpointed and released its leases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def events(log: Path) -> list[str]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line)["event"])
        except (ValueError, KeyError):
            continue
    return out


def test_sigint_to_the_process_group_stops_gracefully(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    (tmp_path / "config.toml").write_text('data_dir = "var"\n[control]\nport = 0\n', encoding="utf-8")
    env = {**os.environ, "SPEECHAI_LOGGING_FILE": str(log), "SPEECHAI_CONTROL_TOKEN": "t"}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "speechai.cli", "run", "--config", str(tmp_path / "config.toml")],
                            env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while "runtime_started" not in events(log):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "runtime did not start"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    seen = events(log)
    assert "runtime_stopped" in seen and "leases_not_released" not in seen
    assert not (tmp_path / "var" / "nx-27017.json").exists()  # the embedded server was stopped, last
