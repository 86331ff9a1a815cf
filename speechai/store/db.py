"""Connect PyMongo's AsyncMongoClient and initialise Beanie with the runtime's documents.

An unreachable server is waited for: the connection is retried with exponential back-off, forever or
up to ``max_wait_s``, so a database that is down while the service (re)starts delays it instead of
failing it. Errors that waiting cannot fix (bad URI, authentication) are raised at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure

from actors.supervisor import Backoff
from speechai.store.models import DOCUMENT_MODELS

# Waiting for the database: 0.5 s doubling to 30 s (the supervisor's back-off, counted from attempt 1).
DB_BACKOFF = Backoff(initial=0.5, factor=2.0, maximum=30.0)


@dataclass(frozen=True)
class Unreachable:
    """One failed attempt, as reported to ``connect``'s ``on_wait`` before it sleeps."""

    address: str
    attempt: int
    next_in_s: float
    error: str


def mongo_address(uri: str) -> str:
    """``host:port[,host:port…]`` (or the socket path) of a MongoDB URI, credentials left out."""
    hosts = uri.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]  # a socket path is %2F-encoded
    return unquote(hosts.rsplit("@", 1)[-1])


def short_error(exc: BaseException) -> str:
    # The driver appends its whole topology description to selection errors: noise in a log line.
    return str(exc).split(", Timeout:")[0]


def _uri_sets(uri: str, option: str) -> bool:
    return option.lower() in {key.lower() for key in parse_qs(urlsplit(uri).query)}


async def connect(uri: str, database: str, *, timeout_ms: int = 5000, max_wait_s: float | None = 0.0,
                  backoff: Backoff = DB_BACKOFF, on_wait: Callable[[Unreachable], None] | None = None
                  ) -> AsyncMongoClient:
    """A client with Beanie initialised on ``database``.

    ``timeout_ms`` bounds one attempt (server selection), unless the URI sets ``serverSelectionTimeoutMS``.
    While the server is unreachable, attempts repeat after ``backoff`` delays until ``max_wait_s`` would be
    exceeded (``0``: a single attempt; ``None``: forever), then the last error is raised. ``on_wait`` hears
    of each failed attempt before the sleep. Cancelling the caller stops the wait.
    """
    options: dict[str, object] = {"tz_aware": True}  # dates come back aware UTC, as the clock produces
    if not _uri_sets(uri, "serverSelectionTimeoutMS"):
        options["serverSelectionTimeoutMS"] = timeout_ms
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        client: AsyncMongoClient = AsyncMongoClient(uri, **options)
        try:
            await init_beanie(database=client[database], document_models=DOCUMENT_MODELS)
            return client
        except ConnectionFailure as exc:
            await _close(client)
            delay = backoff.delay(attempt - 1)
            if max_wait_s is not None and time.monotonic() - started + delay > max_wait_s:
                raise
            if on_wait is not None:
                on_wait(Unreachable(mongo_address(uri), attempt, delay, short_error(exc)))
            await anyio.sleep(delay)
        except BaseException:
            await _close(client)
            raise


async def _close(client: AsyncMongoClient) -> None:
    with anyio.CancelScope(shield=True):  # also when the wait is being cancelled
        await client.close()
