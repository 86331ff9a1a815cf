"""A scripted campaign whose report figures are known in advance (fixed talk seconds: exact cents)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from actors.clock import SimClock
from speechai.domain.settings import CallSettings, HourRange, RetryDelays
from speechai.retell.simulator import RetellSimulator
from speechai.store.db import connect
from speechai.store.embedded import EmbeddedMongo
from speechai.store.models import BatchStatus
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_0850 = datetime(2026, 3, 2, 8, 50, tzinfo=SCL)
SETTINGS = CallSettings(
    max_attempts=3,
    allowed_hours=[HourRange(start=time(9), end=time(13)), HourRange(start=time(15), end=time(19))],
    days_of_week=[1, 2, 3, 4, 5],
    retry_delay_min=RetryDelays(no_answer=60, voicemail=120, conversation=240, provider_error=30, capacity=2),
)
TALK_S = {"success": 100, "answered": 50, "voicemail": 20, "dnc_request": 30}
PEOPLE = [
    Person(["+56911111111"], {"+56911111111": ["success"]}, name="Ana"),
    Person(["+56922222222"], {"+56922222222": ["no_answer", "success"]}, name="Beto"),
    Person(["+56933333333", "+56933333334"], {"+56933333333": ["invalid_number"], "+56933333334": ["success"]},
           name="Carla"),
    Person(["+56944444444"], {"+56944444444": ["voicemail"] * 3}, name="Dario"),
    Person(["+56955555555"], {"+56955555555": ["answered"] * 3}, name="Elena"),
    Person(["+56966666666"], {"+56966666666": ["dnc_request"]}, name="Fabio"),
]


def cost_of(talk_s: int) -> Decimal:
    """The simulator's price list (retell_platform 0.1167 + llm 0.0100 + telephony 0.0250 cents/s)."""
    return sum((Decimal(p) * talk_s for p in ("0.1167", "0.0100", "0.0250")), Decimal(0))


# What the campaign must cost: 3 successes, 3 voicemails, 3 answered, 1 do-not-call request.
EXPECTED_COST = 3 * cost_of(100) + 3 * cost_of(20) + 3 * cost_of(50) + cost_of(30)


async def run_scripted_campaign(db, mongo_uri, tmp_path, *, batch_id: str = "b1") -> None:
    clock = SimClock(MONDAY_0850, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=3, ring_s=5, talk_s=TALK_S) as sim:
        script(sim, PEOPLE)
        await seed_batch(batch_id, PEOPLE, SETTINGS, MONDAY_0850)
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)


async def campaign_data_dir(data_dir: Path, *, paused_person: bool = False,
                            then: Callable[[], Awaitable[Any]] | None = None) -> Any:
    """A data directory as a finished demo leaves it: the scripted campaign in its embedded database.
    ``paused_person`` adds a paused batch whose one job stays pending (a live job); ``then`` runs (and its
    result is returned) while the database is still open."""
    server = EmbeddedMongo(data_dir)
    uri = server.start()
    try:
        client = await connect(uri, "speechai")
        try:
            if paused_person:
                await seed_batch("held", [Person(["+56977777777"], name="Gala")], SETTINGS, MONDAY_0850,
                                 status=BatchStatus.PAUSED)
            await run_scripted_campaign(client["speechai"], uri, data_dir.parent / f"{data_dir.name}-instance")
            return await then() if then is not None else None
        finally:
            await client.close()
    finally:
        server.stop()
