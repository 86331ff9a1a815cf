"""Dialing-control tests reuse the runtime harness (a real instance in-process, the embedded server and
the simulator over HTTP); the API tests serve the control endpoint alone over real HTTP with the upload
and dialing routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from actors.clock import SimClock
from speechai.api.dialing_routes import dialing_routes
from speechai.api.upload import upload_routes
from speechai.runtime.control_api import ControlApi
from speechai.runtime.webhooks import WebhookReceiver
from speechai.store.api_models import Role
from speechai.store.models import Account
from tests.api.conftest import ADMIN_TOKEN, Api, Wakes, _Clockwork, add_keys
from tests.runtime.harness import API_KEY

SCL = ZoneInfo("America/Santiago")
MONDAY_0900 = datetime(2026, 3, 2, 9, 0, tzinfo=SCL)
LANDLINE = "+56229000000"  # a Santiago landline: not allowed for automated collection calls
DEFAULT_600 = "+566001234567"


@pytest.fixture
async def dialing_api(db, tmp_path) -> AsyncIterator[Api]:
    """Accounts ``acme`` and ``beta`` (no batches), an operator and a viewer key each; the control endpoint
    with the upload and dialing routes on loopback."""
    wakes = Wakes()
    clock = SimClock(MONDAY_0900)
    extra = [*upload_routes(clock=clock, report_dir=tmp_path / "reports", default_from_number=DEFAULT_600),
             *dialing_routes(clock=clock, default_from_number=DEFAULT_600, wake=wakes.reasons.append)]
    control = ControlApi(token=ADMIN_TOKEN, scheduler_ref=wakes, webhooks=WebhookReceiver(_Clockwork(), API_KEY),
                         instance_id="dialing-test", clock=clock, extra_routes=extra, rate_limit_per_s=10_000,
                         rate_limit_burst=10_000)
    await control.start("127.0.0.1", 0)
    out = Api(f"http://127.0.0.1:{control.port}", control, wakes)
    for account in ("acme", "beta"):
        await Account(id=account).insert()
        await add_keys(out.tokens, account, (Role.OPERATOR, Role.VIEWER), MONDAY_0900)
    try:
        yield out
    finally:
        assert control._runner is not None
        await control._runner.cleanup()
