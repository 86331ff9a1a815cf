"""The embedded MongoDB-wire server (``nx-27017``) as a child process under the data directory.

A state file records the server's pid, its port and the pid of the process that owns it. A crashed
owner (kill -9) leaves an orphaned server behind; the next start kills that orphan instead of failing.
On Linux the child also gets PR_SET_PDEATHSIG so it usually dies with its parent anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

STATE_FILE = "nx-27017.json"


class EmbeddedServerError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class EmbeddedMongo:
    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "mongo"

    def _clear_stale(self) -> None:
        state_path = self.data_dir / STATE_FILE
        if not state_path.exists():
            return
        try:
            state = json.loads(state_path.read_text())
            server_pid, owner_pid = int(state["server_pid"]), int(state["owner_pid"])
        except (ValueError, KeyError, TypeError):
            state_path.unlink(missing_ok=True)
            return
        if owner_pid != os.getpid() and _alive(owner_pid) and "speechai" in _cmdline(owner_pid):
            raise EmbeddedServerError(
                f"data directory {self.data_dir} is in use by a running speechai process (pid {owner_pid}); "
                "stop it or choose another data_dir"
            )
        if _alive(server_pid) and "nx_27017" in _cmdline(server_pid):
            os.kill(server_pid, signal.SIGKILL)
            for _ in range(100):
                if not _alive(server_pid):
                    break
                time.sleep(0.02)
        state_path.unlink(missing_ok=True)

    def start(self, timeout: float = 20.0) -> str:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        self._clear_stale()
        self.port = self.port or _free_port()
        log = open(self.data_dir / "nx-27017.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nx_27017.nx_27017", "--data-dir", str(self.db_dir),
             "--host", "127.0.0.1", "-p", str(self.port), "--log-file", str(self.data_dir / "nx-27017.log"),
             "--pid-file", str(self.data_dir / "nx-27017.pid")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            # Its own session: a terminal's Ctrl-C must reach the runtime only, which then
            # checkpoints and stops the database last.
            start_new_session=True,
        )
        log.close()
        (self.data_dir / STATE_FILE).write_text(
            json.dumps({"server_pid": self.process.pid, "owner_pid": os.getpid(), "port": self.port})
        )
        self._wait_ready(timeout)
        return self.uri

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedServerError(
                    f"embedded MongoDB exited with code {self.process.returncode}; "
                    f"see {self.data_dir / 'nx-27017.log'}"
                )
            try:
                with MongoClient(self.uri, serverSelectionTimeoutMS=300) as client:
                    client.admin.command("ping")
                return
            except PyMongoError:
                time.sleep(0.1)
        self.stop()
        raise EmbeddedServerError(f"embedded MongoDB did not answer on port {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedMongo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
