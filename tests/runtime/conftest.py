"""Fixtures for tests that drive a running runtime instance over HTTP."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, Plan
from tests.runtime.harness import API_KEY, Person, make_config, seed_batch
from tests.runtime.test_policy_e2e import TOKEN, drive

SUNDAY = datetime(2026, 3, 8, 12, 0, tzinfo=ZoneInfo("America/Santiago"))  # nothing dialable: jobs stay put


@pytest.fixture
async def control_instance(db, mongo_uri, tmp_path, monkeypatch):
    """An instance with a credits account and one closed-window batch of one job; yields a runner for
    ``body(instance, http, base_url, job)`` making HTTP calls against it."""
    monkeypatch.setenv("SPEECHAI_CONTROL_TOKEN", TOKEN)
    clock = SimClock(SUNDAY, speed=1)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=1) as sim:
        await Account(id="acme", plan=Plan.CREDITS, balance_cents=100).insert()
        [job] = await seed_batch("b1", [Person(["+56911112222"])], CallSettings(days_of_week=[1]), clock.now())

        async def run(body) -> None:
            await drive(db, make_config(db, mongo_uri, tmp_path), clock, sim,
                        lambda inst, http, base: body(inst, http, base, job), within=30)

        yield run
