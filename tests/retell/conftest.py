"""Fixtures: a simulator on loopback driven by a manual clock, the real client, a webhook receiver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from aiohttp import web

from actors.clock import SimClock
from speechai.retell.client import RetellClient
from speechai.retell.simulator import RetellSimulator

API_KEY = "test-key-not-real"
FROM = "+56221234567"
START = datetime(2025, 3, 3, 13, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(START, speed=0)


@pytest.fixture
async def sim(clock: SimClock) -> AsyncIterator[RetellSimulator]:
    async with RetellSimulator(api_key=API_KEY, clock=clock, hang_seconds=5) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: RetellSimulator) -> AsyncIterator[RetellClient]:
    async with RetellClient(sim.base_url, API_KEY, timeout_s=2.0) as retell:
        yield retell


@dataclass
class WebhookReceiver:
    """A small HTTP server recording every webhook delivery (body bytes and signature header)."""

    url: str = ""
    received: list[tuple[bytes, str | None]] = field(default_factory=list)
    fail_first: int = 0
    attempts: int = 0
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for body, _ in self.received:
            payload = json.loads(body)
            out.append((payload["event"], payload["call"]))
        return out

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        self.received.append((body, request.headers.get("x-retell-signature")))
        self._arrived.set()
        return web.Response(status=204)

    async def wait_for(self, count: int, within_s: float = 5.0) -> None:
        with anyio.fail_after(within_s):
            while len(self.received) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    rec = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/webhook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/webhook"
    try:
        yield rec
    finally:
        await runner.cleanup()
