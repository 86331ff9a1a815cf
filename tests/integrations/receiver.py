"""A webhook receiver for the tests: a real aiohttp server on loopback that verifies each request with the
standardwebhooks package's own verifier and records it; it can be told to fail the first N requests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    msg_id: str
    body: dict[str, Any]
    verified: bool
    status: int


@dataclass
class Receiver:
    secret: str = ""
    fail_first: int = 0
    fail_status: int = 500
    got: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> set[str]:
        return {r.msg_id for r in self.got if r.status == 200}

    def by_type(self, kind: str) -> dict[str, dict[str, Any]]:
        """Deduplicated by webhook-id, as a receiver must."""
        return {r.msg_id: r.body for r in self.got if r.status == 200 and r.body.get("type") == kind}

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            Webhook(self.secret).verify(raw, dict(request.headers))
            verified = True
        except Exception:
            verified = False
        status = self.fail_status if len(self.got) < self.fail_first else (200 if verified else 401)
        self.got.append(Received(request.headers.get("webhook-id", ""), json.loads(raw), verified, status))
        return web.Response(status=status)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
