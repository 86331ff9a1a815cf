"""A dial is never sent after its window closed, even under a compressed clock where the checks before
create-call take business minutes: the window is re-checked right before the send, ring time included."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import anyio

from actors.clock import SimClock
from speechai.domain.settings import CallSettings, HourRange
from speechai.domain.windows import is_dialable
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")


async def test_no_dial_after_the_window_closed_under_a_fast_clock(db, mongo_uri, tmp_path) -> None:
    # Ten-minute windows, a clock 600 times real time: a few real milliseconds between the window check
    # and the send are business seconds.
    settings = CallSettings(allowed_hours=[HourRange(start=time(9), end=time(9, 10)),
                                           HourRange(start=time(10), end=time(10, 10))],
                            days_of_week=[1, 2, 3, 4, 5, 6, 7], holidays_country=None, max_attempts=3,
                            ring_timeout_s=30, retry_delay_min={"no_answer": 1})
    clock = SimClock(datetime(2026, 3, 2, 9, 0, tzinfo=SCL), speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=3) as sim:
        people = [Person([f"+5698{i:07d}"], {f"+5698{i:07d}": ["no_answer"] * 3}) for i in range(40)]
        script(sim, people)
        await seed_batch("b1", people, settings, clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=10), clock, sim, timeout=90)
        dials = list(sim.dials)
    assert len(dials) >= 40
    late = [d.at.astimezone(SCL) for d in dials if not is_dialable(settings, d.at)]
    assert late == [], f"{len(late)} of {len(dials)} dials after the window closed: {late[:5]}"


async def test_a_dial_rate_wait_never_carries_a_dial_past_the_window(db, mongo_uri, tmp_path) -> None:
    # One dial per second for the account and sixty people with thirty seconds of window left: most wait
    # for the rate, and the window must be checked after that wait, not before it.
    settings = CallSettings(allowed_hours=[HourRange(start=time(9), end=time(9, 1))],
                            days_of_week=[1, 2, 3, 4, 5, 6, 7], holidays_country=None, max_attempts=1,
                            ring_timeout_s=5)
    clock = SimClock(datetime(2026, 3, 2, 9, 0, 30, tzinfo=SCL), speed=5)
    await Account(id="acme", max_dials_per_second=1).insert()
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=3) as sim:
        people = [Person([f"+5699{i:07d}"], {f"+5699{i:07d}": ["no_answer"]}) for i in range(60)]
        script(sim, people)
        await seed_batch("b1", people, settings, clock.now())
        with anyio.move_on_after(12):  # the first day's window and a little more is enough
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=60), clock, sim, timeout=60)
        dials = list(sim.dials)
    assert len(dials) >= 10  # the rate let some through in the window
    late = [d.at.astimezone(SCL).isoformat() for d in dials if not is_dialable(settings, d.at)]
    assert late == []
