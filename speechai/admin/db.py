"""The database for a one-shot admin command: the configured MongoDB, or the embedded server started
on the data directory for the command's duration (it refuses a directory a running service holds)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from speechai.config import Config
from speechai.store.db import connect
from speechai.store.embedded import EmbeddedMongo, make_private_dir


@asynccontextmanager
async def admin_database(config: Config) -> AsyncIterator[None]:
    embedded = None
    uri = config.mongo.uri
    if not uri:
        make_private_dir(config.data_dir)
        embedded = EmbeddedMongo(config.data_dir)
        uri = await anyio.to_thread.run_sync(embedded.start)
    try:
        client = await connect(uri, config.mongo.database)
        try:
            yield
        finally:
            await client.close()
    finally:
        if embedded is not None:
            await anyio.to_thread.run_sync(embedded.stop)
