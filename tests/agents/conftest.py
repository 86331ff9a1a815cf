"""The control endpoint with the agents' routes over real HTTP (embedded MongoDB), two accounts, their
operator keys and agent users created through ``POST /agents``, on a clock that moves only when told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from actors.clock import SimClock
from speechai.agents.routes import agent_routes
from speechai.api.auth import create_key
from speechai.dashboard.routes import dashboard_routes
from speechai.runtime.control_api import ControlApi
from speechai.runtime.webhooks import WebhookReceiver
from speechai.store.api_models import Role
from speechai.store.models import Account, Plan
from tests.api.conftest import ADMIN_TOKEN, _Clockwork
from tests.runtime.harness import API_KEY

MONDAY = datetime(2026, 3, 9, 10, 0, tzinfo=ZoneInfo("America/Santiago"))
# who: (account, role, team)
AGENTS = {"ana": ("acme", "agent", "north"), "beto": ("acme", "agent", "north"),
          "sara": ("acme", "supervisor", "north"), "dino": ("acme", "agent", "south"),
          "adela": ("acme", "admin", None), "bea": ("beta", "agent", "east")}


@dataclass
class AgentsApi:
    base: str
    clock: SimClock
    tokens: dict[str, str] = field(default_factory=dict)  # "ana" / "acme:operator" / "acme:viewer" -> token
    ids: dict[str, str] = field(default_factory=dict)  # "ana" -> agent user id

    async def call(self, who: str, method: str, path: str, **kw) -> tuple[int, dict]:
        token = ADMIN_TOKEN if who == "admin" else self.tokens[who]
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        async with aiohttp.ClientSession() as http, http.request(method, self.base + path, headers=headers,
                                                                  **kw) as r:
            body = await r.json(content_type=None)
            return r.status, body

    async def start(self, who: str, phone: str, **extra) -> dict:
        status, body = await self.call(who, "POST", "/agent-calls", json={"phone": phone, **extra})
        assert status == 201, body
        return body

    async def end(self, who: str, call_id: str, status: str = "completed", **extra) -> dict:
        code, body = await self.call(who, "POST", f"/agent-calls/{call_id}/end", json={"status": status, **extra})
        assert code == 200, body
        return body


@pytest.fixture
async def agents_api(db) -> AsyncIterator[AgentsApi]:
    clock = SimClock(MONDAY)  # speed 0: time moves only by advance()
    control = ControlApi(token=ADMIN_TOKEN, scheduler_ref=None, webhooks=WebhookReceiver(_Clockwork(), API_KEY),  # type: ignore[arg-type]
                         instance_id="agents-test", clock=clock,
                         extra_routes=[*agent_routes(clock=clock),
                                       *dashboard_routes(instance_id="agents-test", clock=clock)],
                         rate_limit_per_s=10_000, rate_limit_burst=10_000)
    await control.start("127.0.0.1", 0)
    out = AgentsApi(f"http://127.0.0.1:{control.port}", clock)
    try:
        for account in ("acme", "beta"):
            await Account(id=account, plan=Plan.UNLIMITED).insert()
            for role in (Role.OPERATOR, Role.VIEWER):
                _, out.tokens[f"{account}:{role.value}"] = await create_key(
                    role=role, account_id=account, name=role.value, created_by="test", now=MONDAY)
        for name, (account, role, team) in AGENTS.items():
            status, body = await out.call(f"{account}:operator", "POST", "/agents",
                                          json={"name": name, "role": role, "team": team})
            assert status == 201, body
            out.tokens[name], out.ids[name] = body["token"], body["agent"]["id"]
        yield out
    finally:
        assert control._runner is not None
        await control._runner.cleanup()
