"""A dial is never sent after its window closed, even under a compressed clock where the checks before
create-call take business minutes: the window is re-checked right before the send, ring time included."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from actors.clock import SimClock
from speechai.domain.settings import CallSettings, HourRange
from speechai.domain.windows import is_dialable
from speechai.retell.simulator import RetellSimulator
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
