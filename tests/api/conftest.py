"""The control endpoint over real HTTP (embedded MongoDB) with every route module production serves, two
accounts and their keys."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from actors.clock import SimClock
from speechai.agents.routes import agent_routes
from speechai.api.auth import create_key, requires
from speechai.api.dialing_routes import dialing_routes
from speechai.api.integration_routes import integration_routes
from speechai.api.segment_routes import segment_routes
from speechai.api.upload import upload_routes
from speechai.dashboard.routes import dashboard_routes
from speechai.domain.settings import CallSettings
from speechai.integrations.outbox import Outbox
from speechai.observability.metrics import metrics_routes
from speechai.reports.routes import report_routes
from speechai.runtime.control_api import ControlApi
from speechai.runtime.webhooks import WebhookReceiver
from speechai.store.api_models import Role
from speechai.store.models import Account, Batch, Job, JobState, Phone, Plan
from tests.runtime.conftest import SUNDAY
from tests.runtime.harness import API_KEY

ADMIN_TOKEN = "admin-token-" + "x" * 24


class Wakes:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def tell_nowait(self, msg: object) -> bool:
        self.reasons.append(str(getattr(msg, "reason", msg)))
        return True


class _Clockwork:
    """What the webhook receiver reads before a signature is verified (no signed event is sent here)."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)


@dataclass
class Api:
    base: str
    api: ControlApi
    wakes: Wakes
    tokens: dict[str, str] = field(default_factory=dict)  # "acme:operator" -> token
    jobs: dict[str, list[Job]] = field(default_factory=dict)  # account -> its jobs

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN if who == 'admin' else self.tokens[who]}"}

    async def call(self, who: str, method: str, path: str, **kw) -> tuple[int, dict]:
        headers = {**self.headers(who), **kw.pop("headers", {})}
        async with aiohttp.ClientSession() as http, http.request(method, self.base + path, headers=headers,
                                                                  **kw) as r:
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = {}
            return r.status, body


def job_doc(account: str, batch: str, i: int, at: datetime, state: JobState = JobState.PENDING) -> Job:
    number = f"+569{(10_000_000 + i) % 100_000_000:08d}"
    return Job(account_id=account, batch_id=batch, dedup_key=f"{account}:{batch}:{i}", person_key=number,
               phones=[Phone(number=number)], state=state, next_try_at=at + timedelta(days=1),
               created_at=at, updated_at=at)


async def seed(account: str, batch: str, n: int, states: list[JobState]) -> list[Job]:
    await Account(id=account, plan=Plan.CREDITS, balance_cents=100).insert()
    await Batch(id=batch, account_id=account, name=batch, call_settings=CallSettings(days_of_week=[1]),
                created_at=SUNDAY).insert()
    jobs = [job_doc(account, batch, i, SUNDAY, states[i % len(states)]) for i in range(n)]
    await Job.insert_many(jobs)
    return await Job.find({"batch_id": batch}).sort("+_id").to_list()


@requires(Role.VIEWER, account_from="path:account_id")
async def declared_extra(request: web.Request) -> web.Response:
    """A route of another module that declares its access."""
    return web.json_response({"account": request.match_info["account_id"]})


async def undeclared_extra(request: web.Request) -> web.Response:
    """A route of another module that declares nothing: admin keys only."""
    return web.json_response({"ok": True})


def production_routes(clock: SimClock, wakes: Wakes, tmp_path) -> list[web.RouteDef]:
    """The extra route modules production passes to the endpoint (speechai.runtime.service), built the
    same way; only the runtime objects (scheduler, outbox) are stand-ins."""
    return [*upload_routes(clock=clock, report_dir=tmp_path / "reports"),
            *report_routes(clock=clock),
            *segment_routes(scheduler_ref=wakes),
            *dialing_routes(clock=clock, wake=wakes.reasons.append),
            *agent_routes(clock=clock),
            *metrics_routes(instance_id="api-test"),
            *dashboard_routes(instance_id="api-test", clock=clock),
            *integration_routes(clock=clock, outbox=Outbox(lambda: 0), allow_private_targets=False)]


async def add_keys(tokens: dict[str, str], account: str, roles: tuple[Role, ...], now: datetime) -> None:
    """A key of each role for ``account``, its token kept as ``tokens["<account>:<role>"]``."""
    for role in roles:
        _, token = await create_key(role=role, account_id=account, name=f"{account} {role.value}",
                                    created_by="test", now=now)
        tokens[f"{account}:{role.value}"] = token


@pytest.fixture
async def api(db, tmp_path) -> AsyncIterator[Api]:
    """Accounts ``acme`` (batch a1) and ``beta`` (batch b1), 4 jobs each in varied states, a key of every
    role per account; the endpoint on loopback with a generous rate limit."""
    states = [JobState.PENDING, JobState.FAILED, JobState.DONE, JobState.IN_FLIGHT]
    wakes = Wakes()
    receiver = WebhookReceiver(_Clockwork(), API_KEY)  # type: ignore[arg-type]
    clock = SimClock(SUNDAY)
    extra = [*production_routes(clock, wakes, tmp_path),
             web.get("/extra/{account_id}/thing", declared_extra), web.post("/extra/undeclared", undeclared_extra)]
    control = ControlApi(token=ADMIN_TOKEN, scheduler_ref=wakes, webhooks=receiver, instance_id="api-test",
                         clock=clock, extra_routes=extra, rate_limit_per_s=10_000, rate_limit_burst=10_000,
                         deferred_cancel_every_s=0.2)
    await control.start("127.0.0.1", 0)
    out = Api(f"http://127.0.0.1:{control.port}", control, wakes)
    for account, batch in (("acme", "a1"), ("beta", "b1")):
        out.jobs[account] = await seed(account, batch, 4, states)
        await add_keys(out.tokens, account, (Role.OPERATOR, Role.VIEWER, Role.BILLING), SUNDAY)
    # served by the site start() bound; serve_forever's periodic work is driven by the tests themselves
    try:
        yield out
    finally:
        assert control._runner is not None
        await control._runner.cleanup()
