"""The database for a one-shot command (``speechai report``, ``status``, ``db indexes``, ``jobs …``): the
configured MongoDB, or the embedded server started on the data directory for the command's duration.

With the embedded database, the one to read is chosen the same way for every command:

- ``<data_dir>/mongo`` does not exist but the demo's (``<data_dir>/demo/mongo``) does: the demo's is
  used, and no empty database is created just to read from it;
- ``<data_dir>/mongo`` exists but holds no batch while the demo's exists: the demo's is used (a command
  run once without ``--demo`` after ``speechai demo`` left an empty one behind);
- a running speechai process holds the data directory: read-only commands (``attach``) read through
  that process's server (its port is in the directory's state file); the others refuse, as the
  embedded server cannot be started twice on one directory.

Whenever the choice is not simply the configured database, a line on stderr says which one is read.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from speechai.config import Config
from speechai.store.db import connect
from speechai.store.embedded import STATE_FILE, EmbeddedMongo, cmdline, make_private_dir, pid_alive
from speechai.store.models import Batch

DEMO = "demo"


@dataclass(frozen=True)
class RunningServer:
    owner_pid: int
    port: int

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"


def running_server(data_dir: Path) -> RunningServer | None:
    """The embedded server a live speechai process (not this one) runs on ``data_dir``, from its state
    file; None when there is none (no file, a stale one, or a crashed owner)."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        owner, port = int(state["owner_pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if owner == os.getpid() or not pid_alive(owner) or "speechai" not in cmdline(owner):
        return None
    return RunningServer(owner, port)


def demo_dir(config: Config) -> Path:
    return config.data_dir / DEMO


def has_demo(config: Config) -> bool:
    """A demo's database exists under ``data_dir`` (and ``data_dir`` is not itself the demo's)."""
    return config.data_dir.name != DEMO and (demo_dir(config) / "mongo").exists()


def demo_instead(config: Config) -> bool:
    """The cheap half of the choice, decided without starting a server: embedded, no database of its
    own under ``data_dir`` yet, and a demo's there."""
    return not config.mongo.uri and not (config.data_dir / "mongo").exists() and has_demo(config)


def _say(text: str) -> None:
    print(f"speechai: {text}", file=sys.stderr, flush=True)


async def _has_batches() -> bool:
    return await Batch.get_pymongo_collection().find_one({}, {"_id": 1}) is not None


@asynccontextmanager
async def _embedded(data_dir: Path, database: str) -> AsyncIterator[None]:
    embedded = EmbeddedMongo(data_dir)
    uri = await anyio.to_thread.run_sync(embedded.start)
    try:
        client = await connect(uri, database)
        try:
            yield
        finally:
            await client.close()
    finally:
        await anyio.to_thread.run_sync(embedded.stop)


@asynccontextmanager
async def _attached(server: RunningServer, database: str) -> AsyncIterator[None]:
    client = await connect(server.uri, database)
    try:
        yield
    finally:
        await client.close()


@asynccontextmanager
async def admin_database(config: Config, *, fallback: bool = True, attach: bool = False) -> AsyncIterator[Path | None]:
    """Beanie initialised on the database the command uses; yields the data directory whose embedded
    database it is (None for a configured URI). ``fallback``: prefer the demo's database as described
    above; ``attach``: a read-only command may read through a running process's server."""
    database = config.mongo.database
    if config.mongo.uri:
        client = await connect(config.mongo.uri, database)
        try:
            yield None
        finally:
            await client.close()
        return
    data_dir = config.data_dir
    if fallback and demo_instead(config):
        data_dir = demo_dir(config)
        _say(f"reading the demo's database under {data_dir} (there is none under {config.data_dir} yet)")
    if attach and (server := running_server(data_dir)) is not None:
        _say(f"reading through the running speechai process (pid {server.owner_pid}) that holds {data_dir}")
        async with _attached(server, database):
            yield data_dir
        return
    make_private_dir(data_dir)
    if fallback and data_dir == config.data_dir and has_demo(config):
        async with _embedded(data_dir, database):
            empty = not await _has_batches()
            if not empty:
                yield data_dir
        if not empty:
            return
        data_dir = demo_dir(config)
        _say(f"reading the demo's database under {data_dir} (the one under {config.data_dir} has no batches)")
        if attach and (server := running_server(data_dir)) is not None:
            async with _attached(server, database):
                yield data_dir
            return
    async with _embedded(data_dir, database):
        yield data_dir
