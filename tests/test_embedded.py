"""The embedded nx-27017 server: started under the data directory, survives kill -9, a crashed
run's leftovers (state file, orphaned server) never block the next start, and what it keeps on disk
(database, log, port) is private to the service's user."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from speechai.store.db import connect
from speechai.store.embedded import LOG_FILE, PID_FILE, STATE_FILE, EmbeddedMongo, EmbeddedServerError
from speechai.store.models import DoNotCall

NOBODY = 65534


def ping_insert(uri: str, value: int) -> None:
    with MongoClient(uri, serverSelectionTimeoutMS=3000) as client:
        client.t.x.insert_one({"v": value})


def values(uri: str) -> list[int]:
    with MongoClient(uri, serverSelectionTimeoutMS=3000) as client:
        return sorted(d["v"] for d in client.t.x.find())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child still answers kill(0); reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def test_data_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    server = EmbeddedMongo(tmp_path)
    uri = server.start()
    ping_insert(uri, 1)
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    server.process = None
    again = EmbeddedMongo(tmp_path)
    try:
        assert values(again.start()) == [1]
        assert (tmp_path / "mongo").is_dir()
    finally:
        again.stop()
    assert not (tmp_path / STATE_FILE).exists()


def test_stale_state_file_with_dead_processes_does_not_block(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / STATE_FILE).write_text(json.dumps({"server_pid": dead.pid, "owner_pid": dead.pid, "port": 1}))
    server = EmbeddedMongo(tmp_path)
    try:
        ping_insert(server.start(), 2)
    finally:
        server.stop()


def test_garbage_state_file_does_not_block(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with EmbeddedMongo(tmp_path) as server:
        ping_insert(server.uri, 3)


def test_orphaned_server_of_a_crashed_owner_is_replaced(tmp_path: Path) -> None:
    # An owner process starts the server, then dies by SIGKILL without stopping it.
    script = (
        "import sys, time; from pathlib import Path; from speechai.store.embedded import EmbeddedMongo\n"
        "s = EmbeddedMongo(Path(sys.argv[1])); s.start(); print(s.process.pid, flush=True); time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        orphan_pid = int(owner.stdout.readline())
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        server = EmbeddedMongo(tmp_path)
        try:
            ping_insert(server.start(), 4)
            deadline = time.monotonic() + 5
            while alive(orphan_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(orphan_pid), "the orphaned server is still running"
        finally:
            server.stop()
    finally:
        if owner.poll() is None:
            owner.kill()


def test_data_directory_in_use_by_a_live_speechai_process_is_refused(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; print(1, flush=True); time.sleep(60)",
                               "speechai-holder"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline()  # running its own command line now
        (tmp_path / STATE_FILE).write_text(json.dumps({"server_pid": holder.pid, "owner_pid": holder.pid,
                                                        "port": 1}))
        with pytest.raises(EmbeddedServerError, match="in use by a running speechai process"):
            EmbeddedMongo(tmp_path).start()
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_log_and_port_are_private_after_a_real_start(tmp_path: Path) -> None:
    # What an earlier version (or a umask of 022) left behind: world-readable everything.
    data = tmp_path / "var"
    (data / "mongo").mkdir(parents=True, mode=0o755)
    data.chmod(0o755)
    (data / LOG_FILE).write_text("old line\n")
    (data / LOG_FILE).chmod(0o644)
    server = EmbeddedMongo(data)
    try:
        ping_insert(server.start(), 5)  # creates t.db and its WAL files
        files = [p for p in data.rglob("*") if p.is_file()]
        names = {p.relative_to(data).as_posix() for p in files}
        assert {STATE_FILE, LOG_FILE, PID_FILE, "mongo/t.db"} <= names, names
        assert mode(data) == 0o700 and mode(data / "mongo") == 0o700
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        server.stop()


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own tmp tree is 0700, which would hide the modes)."""
    path = Path(tempfile.mkdtemp(prefix="speechai-modes-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def read_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cat", str(path)], user=NOBODY, group=NOBODY, capture_output=True, text=True,
                          timeout=10)


def test_another_local_user_cannot_read_the_port_file(traversable_dir: Path) -> None:
    server = EmbeddedMongo(traversable_dir / "var")
    try:
        server.start()
        state = traversable_dir / "var" / STATE_FILE
        assert json.loads(state.read_text())["port"] == server.port
        assert mode(state) & 0o077 == 0 and mode(state.parent) & 0o077 == 0
        if os.geteuid() != 0:
            return  # only root can act as another user; the mode bits above are the whole check then
        control = traversable_dir / "public"
        control.write_text("readable")
        control.chmod(0o644)
        assert read_as_nobody(control).stdout == "readable"  # the check below can fail
        denied = read_as_nobody(state)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        assert str(server.port) not in denied.stdout
    finally:
        server.stop()


async def test_server_log_has_no_phone_or_rut_after_a_do_not_call_lookup(tmp_path: Path) -> None:
    with EmbeddedMongo(tmp_path) as server:
        client = await connect(server.uri, "dnc")
        try:
            now = datetime(2026, 3, 2, 12, tzinfo=UTC)
            await DoNotCall(account_id="acme", key="21373101-7", reason="asked", added_at=now).insert()
            await DoNotCall(account_id="acme", key="+56987654321", reason="asked", added_at=now).insert()
            # The gate's lookup: every key of the person at once.
            keys = ["21373101-7", "+56987654321", "+56911112222"]
            assert await DoNotCall.find({"account_id": "acme", "key": {"$in": keys}}).count() == 2
            with pytest.raises(DuplicateKeyError):
                await DoNotCall(account_id="acme", key="21373101-7", added_at=now).insert()
        finally:
            await client.close()
    log = (tmp_path / LOG_FILE).read_text()
    for secret in ("21373101", "56987654321", "56911112222"):
        assert secret not in log


def test_what_the_server_still_logs_is_redacted(tmp_path: Path) -> None:
    # The server child's logging set-up, in a process of its own, fed an error that quotes personal data.
    out = tmp_path / "server.log"
    script = (
        "import logging, sys\n"
        "from speechai.store.embedded import install_redacting_record_factory\n"
        "install_redacting_record_factory()\n"
        "logging.basicConfig(filename=sys.argv[1], level=logging.INFO)\n"
        "log = logging.getLogger('nx_27017')\n"
        "log.error('Error in aggregate: %s', {'key': {'$in': ['+56987654321', '21.373.101-7']}})\n"
        "try:\n"
        "    raise ValueError('duplicate key: 12345678-5')\n"
        "except ValueError:\n"
        "    log.exception('Error handling OP_MSG')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, timeout=30)
    text = out.read_text()
    assert "Error in aggregate" in text and "+56*****4321" in text and "21.***.***-7" in text
    assert "ValueError: duplicate key: 12.***.***-5" in text
    for secret in ("56987654321", "21.373.101", "12345678"):
        assert secret not in text
