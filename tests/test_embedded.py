"""The embedded nx-27017 server: started under the data directory, survives kill -9, and a crashed
run's leftovers (state file, orphaned server) never block the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient

from speechai.store.embedded import STATE_FILE, EmbeddedMongo, EmbeddedServerError


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
