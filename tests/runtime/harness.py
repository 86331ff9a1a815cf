"""Run a real runtime instance in-process against the embedded server and a simulator over HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from beanie import init_beanie
from pymongo.asynchronous.database import AsyncDatabase

from actors.clock import SimClock
from speechai.config import Config
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.runtime.service import Instance, run_instance
from speechai.store.models import DOCUMENT_MODELS, Account, Batch, BatchStatus, Job, Phone

API_KEY = "test-key"


@dataclass
class Person:
    phones: Sequence[str]
    outcomes: dict[str, Sequence[str]] = field(default_factory=dict)  # phone -> scripted outcomes
    name: str = "Persona"


async def seed_batch(batch_id: str, people: Sequence[Person], settings: CallSettings, now: datetime, *,
                     account: str = "acme", status: BatchStatus = BatchStatus.ACTIVE) -> list[Job]:
    if await Account.get(account) is None:
        await Account(id=account).insert()
    await Batch(id=batch_id, account_id=account, call_settings=settings, status=status, created_at=now).insert()
    jobs = []
    for i, p in enumerate(people):
        job = Job(account_id=account, batch_id=batch_id, dedup_key=f"{account}:{batch_id}:{i}",
                  person_key=p.phones[0], name=p.name, phones=[Phone(number=n) for n in p.phones],
                  variables={"name": p.name, "amount": "150000"}, next_try_at=now, created_at=now, updated_at=now)
        await job.insert()
        jobs.append(job)
    return jobs


def script(sim: RetellSimulator, people: Sequence[Person]) -> None:
    for p in people:
        for phone, outcomes in p.outcomes.items():
            sim.script(phone, *outcomes)


def make_config(db: AsyncDatabase, mongo_uri: str, data_dir: Path, **runtime: Any) -> Config:
    config = Config(data_dir=data_dir)
    config.mongo.uri = mongo_uri
    config.mongo.database = db.name
    config.control.port = 0
    config.runtime.clock = "simulated"
    config.runtime.skip_idle = True
    config.runtime.poll_interval_s = 5
    for k, v in runtime.items():
        setattr(config.runtime, k, v)
    return config


async def run_campaign(db: AsyncDatabase, config: Config, clock: SimClock, sim: RetellSimulator, *,
                       timeout: float = 60.0,  # noqa: ASYNC109 - a test's bound, in real seconds
                       stop: anyio.Event | None = None,
                       on_ready: Any = None) -> None:
    """Run until no active batch has work left, then point Beanie back at the test database."""
    try:
        with anyio.fail_after(timeout):
            await run_instance(config, until_done=stop is None, clock=clock, simulator=sim,
                               handle_signals=False, stop=stop, on_ready=on_ready)
    finally:
        await init_beanie(database=db, document_models=DOCUMENT_MODELS)


__all__ = ["API_KEY", "Instance", "Person", "make_config", "run_campaign", "script", "seed_batch"]
