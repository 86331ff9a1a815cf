"""The window holds in the debtor's local time: through the real scheduler, embedded MongoDB and the
simulator over HTTP, a Los Angeles number in a New York batch is dialed at 09:00 Los Angeles, not New York."""

from __future__ import annotations

import json
from datetime import datetime, time
from zoneinfo import ZoneInfo

from actors.clock import SimClock
from speechai.api.schemas import JobOut
from speechai.domain.settings import CallSettings, HourRange
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Job, JobState
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

NY, LA = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")
NY_NUMBER, LA_NUMBER, CHICAGO_NUMBER = "+12125550123", "+13105550123", "+13125550123"


async def test_los_angeles_number_waits_for_nine_in_los_angeles(db, mongo_uri, tmp_path) -> None:
    settings = CallSettings(timezone="America/New_York", holidays_country=None, days_of_week=[1, 2, 3, 4, 5, 6, 7],
                            allowed_hours=[HourRange(start=time(9), end=time(20))], max_attempts=1)
    start = datetime(2026, 3, 10, 8, 55, tzinfo=NY)  # a Tuesday; both coasts on daylight time
    clock = SimClock(start, speed=600)
    people = [Person([n], {n: ["success"]}, name=name)
              for n, name in ((NY_NUMBER, "ny"), (LA_NUMBER, "la"), (CHICAGO_NUMBER, "chi"))]
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=1) as sim:
        script(sim, people)
        # seeded like jobs loaded before zones were stored: the zones are derived from the number at dial time
        await seed_batch("b1", people, settings, clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim, timeout=60)
        dialed = {d.to_number: d.at for d in sim.dials}
    assert set(dialed) == {NY_NUMBER, LA_NUMBER, CHICAGO_NUMBER}
    ny_local = dialed[NY_NUMBER].astimezone(NY)
    assert ny_local.date() == start.date() and time(9) <= ny_local.time() < time(9, 15)
    la_local = dialed[LA_NUMBER].astimezone(LA)
    assert la_local.date() == start.date() and time(9) <= la_local.time() < time(9, 15), la_local
    chi_local = dialed[CHICAGO_NUMBER].astimezone(ZoneInfo("America/Chicago"))
    assert time(9) <= chi_local.time() < time(9, 15), chi_local
    jobs = {j.name: j async for j in Job.find({"batch_id": "b1"})}
    assert all(j.state == JobState.DONE for j in jobs.values())
    assert [a.local_zones for a in jobs["la"].attempts if a.placed] == [["America/New_York", "America/Los_Angeles"]]
    assert [a.local_zones for a in jobs["ny"].attempts if a.placed] == [["America/New_York"]]
    # what GET /jobs/{id} answers shows the zones per attempt
    shown = JobOut.model_validate(json.loads(jobs["la"].model_dump_json()))
    assert [a.local_zones for a in shown.attempts if a.placed] == [["America/New_York", "America/Los_Angeles"]]
    # the LA job was refused at 09:00 New York with a reason naming its zones and when its window opens
    assert any(t.reason.startswith("outside allowed hours; next window 2026-03-10T16:00:00+00:00 "
                                   "(America/New_York, America/Los_Angeles)") for t in jobs["la"].history)
