"""The control endpoint's connection cap and failed-authentication limit, over real sockets."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from aiohttp import web

from actors.clock import SimClock
from speechai.api.auth import public
from speechai.runtime.control_api import ControlApi
from speechai.runtime.webhooks import WebhookReceiver
from tests.api.conftest import ADMIN_TOKEN, Wakes, _Clockwork
from tests.runtime.conftest import SUNDAY
from tests.runtime.harness import API_KEY

CAP = 20
release = asyncio.Event()


@public
async def slow(request: web.Request) -> web.Response:
    """Holds its request in progress until the test releases it."""
    await release.wait()
    return web.json_response({"ok": True})


@pytest.fixture
async def capped(db) -> AsyncIterator[ControlApi]:
    control = ControlApi(token=ADMIN_TOKEN, scheduler_ref=Wakes(), webhooks=WebhookReceiver(_Clockwork(), API_KEY),
                         instance_id="cap-test", clock=SimClock(SUNDAY), extra_routes=[web.get("/slow", slow)],
                         max_connections=CAP, auth_failures_per_s=1, auth_failure_burst=5)
    await control.start("127.0.0.1", 0)
    try:
        yield control
    finally:
        release.set()
        assert control._runner is not None
        await control._runner.cleanup()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def half_request(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the headers never end
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        with anyio.fail_after(within_s):
            await reader.read(65536)  # b"" (or a reset): the server closed it
        return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def health(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as r:
        return r.status


async def test_half_sent_connections_past_the_cap_are_closed_and_health_answers(capped: ControlApi) -> None:
    assert capped.port is not None and capped.site is not None and capped.site.cap is not None
    baseline = open_fds()
    extra = 30
    socks = [await half_request(capped.port) for _ in range(CAP + extra)]
    await asyncio.sleep(0.2)
    # the server holds at most CAP of them: the oldest idle ones were closed to make room, at once
    closed = await asyncio.gather(*(closed_by_server(r, 0.5) for r, _ in socks))
    assert sum(closed) >= extra, sum(closed)
    assert len(capped.site.cap.open_connections()) <= CAP
    # well inside keepalive_timeout_s (15 s): nothing waited for a timeout
    t0 = time.monotonic()
    assert await health(capped.port) == 200
    assert time.monotonic() - t0 < 2
    # descriptors: ours (CAP + extra) plus the server's, which stay within the cap
    assert open_fds() - baseline <= (CAP + extra) + CAP + 5
    for _, w in socks:
        w.close()
    await asyncio.sleep(0.2)
    assert open_fds() - baseline <= 5


async def test_past_the_cap_with_every_connection_busy_a_new_one_gets_503(capped: ControlApi) -> None:
    assert capped.port is not None
    release.clear()
    busy = []
    for _ in range(CAP):
        reader, writer = await asyncio.open_connection("127.0.0.1", capped.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        busy.append((reader, writer))
    await asyncio.sleep(0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", capped.port)
    with anyio.fail_after(2):
        answer = await reader.read()
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer, answer[:200]
    writer.close()
    release.set()
    for r, w in busy:  # the busy ones were never touched: they finish
        with anyio.fail_after(5):
            assert (await r.readline()).startswith(b"HTTP/1.1 200")
        w.close()
    assert await health(capped.port) == 200


async def test_a_bad_token_flood_gets_429_and_a_good_key_still_works(capped: ControlApi) -> None:
    assert capped.port is not None
    url = f"http://127.0.0.1:{capped.port}/accounts"
    statuses, retry_after = [], None
    async with aiohttp.ClientSession() as http:
        for i in range(12):
            async with http.get(url, headers={"Authorization": f"Bearer wrong-{i}"}) as r:
                statuses.append(r.status)
                if r.status == 429:
                    retry_after = r.headers.get("Retry-After")
                    body = await r.json(content_type=None)
                    assert body["retry_after_s"] > 0 and "failed authentications" in body["detail"]
        assert statuses[:5] == [401] * 5 and set(statuses[6:]) == {429}, statuses
        assert retry_after is not None and int(retry_after) >= 1
        # a valid key from the same address is not refused: only failures are counted
        async with http.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
            assert r.status == 200
