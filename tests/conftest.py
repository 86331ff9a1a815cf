"""Shared fixtures: a real MongoDB-wire server for the whole session.

``SPEECHAI_TEST_MONGO_URI`` names a real MongoDB to run against; otherwise the embedded
``nx-27017`` server is started in a temporary directory and stopped at the end.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from speechai.store.db import connect
from speechai.store.embedded import EmbeddedMongo


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if uri := os.environ.get("SPEECHAI_TEST_MONGO_URI"):
        yield uri
        return
    server = EmbeddedMongo(Path(tmp_path_factory.mktemp("embedded-mongo")))
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
async def db(mongo_uri: str) -> AsyncIterator[AsyncDatabase]:
    """A fresh database per test, with Beanie initialised on it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    client = await connect(mongo_uri, name)
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


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
