"""The embedded MongoDB-wire server (``nx-27017``) as a child process under the data directory.

A state file records the server's pid, its port and the pid of the process that owns it. A crashed
owner (kill -9) leaves an orphaned server behind; the next start kills that orphan instead of failing.
On Linux the child also gets PR_SET_PDEATHSIG so it usually dies with its parent anyway.

The server has no authentication and listens on loopback TCP only (nx-27017 has no unix-socket
option), so the data stays private through file modes: the data directory and the server's directory
are 0700, everything the server writes is 0600 (it runs with umask 077), and its own log keeps only
errors, with phones and RUTs masked (at INFO it prints every command document, and its storage engine
prints query filters in warnings).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
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
LOG_FILE = "nx-27017.log"
PID_FILE = "nx-27017.pid"
PRIVATE_UMASK = 0o077


class EmbeddedServerError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700, also when it already existed with a wider mode."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def _make_private_tree(root: Path) -> None:
    """Directories 0700, files 0600 below ``root``: what an earlier version or another umask left."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        wanted = 0o700 if path.is_dir() else 0o600
        if path.stat().st_mode & 0o777 != wanted:
            path.chmod(wanted)


def _open_private(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def install_redacting_record_factory() -> None:
    """Mask phones and RUTs in every stdlib log record of this process (message and traceback)."""
    from speechai.logs import redact_text

    make = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed logging call must not break the request that made it
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        if record.exc_info:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


def run_nx_27017() -> None:
    """The server child's entry point: nx-27017's own ``main`` with quiet, redacted logging.

    A handler on the root logger makes nx-27017's ``basicConfig`` (INFO to stderr) a no-op; the root
    level WARNING drops its per-command INFO lines and ERROR drops the storage engine's query-plan
    warnings, which quote filters such as ``{'key': {'$in': ['+569…']}}``.
    """
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("neosqlite").setLevel(logging.ERROR)
    # Its SIGTERM handler exits from inside the event loop: asyncio then reports every open connection.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    install_redacting_record_factory()
    from nx_27017.nx_27017 import main

    main()


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
        if owner_pid != os.getpid() and pid_alive(owner_pid) and "speechai" in cmdline(owner_pid):
            raise EmbeddedServerError(
                f"data directory {self.data_dir} is in use by a running speechai process (pid {owner_pid}); "
                "stop it or choose another data_dir"
            )
        if pid_alive(server_pid) and "nx_27017" in cmdline(server_pid):
            os.kill(server_pid, signal.SIGKILL)
            for _ in range(100):
                if not pid_alive(server_pid):
                    break
                time.sleep(0.02)
        state_path.unlink(missing_ok=True)

    def _make_private(self) -> None:
        make_private_dir(self.data_dir)
        make_private_dir(self.db_dir)
        _make_private_tree(self.db_dir)
        for name in (LOG_FILE, PID_FILE, STATE_FILE):
            if (path := self.data_dir / name).is_file() and path.stat().st_mode & 0o077:
                path.chmod(0o600)

    def start(self, timeout: float = 20.0) -> str:
        self._make_private()
        self._clear_stale()
        self.port = self.port or _free_port()
        log = _open_private(self.data_dir / LOG_FILE)  # also catches a traceback the server dies with
        try:
            self.process = subprocess.Popen(
                # "nx_27017" in the command line is how _clear_stale recognises an orphaned server.
                [sys.executable, "-c", "from speechai.store.embedded import run_nx_27017; run_nx_27017()",
                 "--data-dir", str(self.db_dir), "--host", "127.0.0.1", "-p", str(self.port),
                 "--log-file", str(self.data_dir / LOG_FILE), "--pid-file", str(self.data_dir / PID_FILE)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                umask=PRIVATE_UMASK,  # database files, WAL, pid file: 0600
                # Its own session: a terminal's Ctrl-C must reach the runtime only, which then
                # checkpoints and stops the database last.
                start_new_session=True,
            )
        finally:
            os.close(log)
        state = json.dumps({"server_pid": self.process.pid, "owner_pid": os.getpid(), "port": self.port})
        fd = os.open(self.data_dir / STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as f:
            f.write(state)
        self._wait_ready(timeout)
        return self.uri

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedServerError(
                    f"embedded MongoDB exited with code {self.process.returncode}; "
                    f"see {self.data_dir / LOG_FILE}"
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
