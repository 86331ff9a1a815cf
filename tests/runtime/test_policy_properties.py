"""Property: whatever the settings, people, outcomes and start instant, no dial the real scheduler starts
breaks a window, a per-person cap, a do-not-call entry or the account's credit.

Each example runs a short real campaign (runtime, embedded MongoDB, simulator over HTTP, fast clock)
and checks the simulator's dial log with the independent checker of ``test_policy_e2e``.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.clock import SimClock
from speechai.domain.presets import Preset
from speechai.domain.settings import CallSettings, HourRange, PersonPolicySettings, RetryDelays
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import DOCUMENT_MODELS, Account, DoNotCall, Job, JobState, Plan
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch
from tests.runtime.test_policy_e2e import FINAL, check_log, drive, wait_for

TIMEZONES = ["America/Santiago", "America/New_York", "Europe/Madrid", "Asia/Tokyo"]
OUTCOMES = ["success", "answered", "no_answer", "busy", "voicemail", "invalid_number", "provider_error",
            "dnc_request"]


@st.composite
def call_settings(draw: st.DrawFn) -> CallSettings:
    preset = draw(st.sampled_from(list(Preset)))
    ranges = []
    for _ in range(draw(st.integers(1, 2))):
        start = draw(st.integers(5, 21))
        ranges.append(HourRange(start=time(start), end=time(min(23, start + draw(st.integers(1, 6))))))
    days = draw(st.sets(st.integers(1, 7), min_size=1, max_size=7))
    waves = draw(st.sets(st.sampled_from([r.start for r in ranges]), max_size=2))
    values = {
        "preset": preset, "allowed_hours": ranges, "days_of_week": sorted(days), "waves": sorted(waves),
        "timezone": draw(st.sampled_from(TIMEZONES)), "holidays_country": draw(st.sampled_from([None, "CL", "US"])),
        "max_attempts": draw(st.integers(1, 3)), "max_call_duration_s": 120,
        "daily_quota": draw(st.none() | st.integers(1, 3)),
        "retry_delay_min": RetryDelays(no_answer=draw(st.sampled_from([30, 60, 240])), conversation=120),
        "person_policy": PersonPolicySettings(max_calls_per_day=draw(st.integers(1, 3))),
    }
    try:
        return CallSettings(**values)
    except ValueError:  # e.g. a preset leaving nothing to dial: the settings are refused up front
        return CallSettings(**{**values, "preset": Preset.NONE})


people_st = st.lists(
    st.tuples(st.integers(1, 2),  # phones
              st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=3)),  # first phone's outcomes
    min_size=1, max_size=4)

# 2026 instants, including weeks around DST changes in both hemispheres
start_st = st.builds(lambda day, minute: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day, minutes=minute),
                     st.sampled_from([60, 65, 88, 95, 180, 247, 298, 305]), st.integers(0, 24 * 60 - 1))


async def stalled(account: str, batch: str) -> bool:
    """Nothing more can happen: every job final, or the account is suspended and nothing is in flight."""
    jobs = await Job.find({"batch_id": batch}).to_list()
    if all(j.state in FINAL for j in jobs):
        return True
    acct = await Account.get(account)
    return bool(acct.suspended_reason) and not any(j.state == JobState.IN_FLIGHT for j in jobs)


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call_settings(), people_st, start_st, st.booleans(), st.none() | st.integers(0, 120))
async def test_no_dial_breaks_the_policy(db, mongo_uri, tmp_path, batch_settings, people, start, listed,
                                         credits) -> None:
    tag = uuid.uuid4().hex[:8]  # the db fixture spans every example: keep each example's ids apart
    account, batch = f"acct-{tag}", f"batch-{tag}"
    persons = []
    for i, (phones, outcomes) in enumerate(people):
        numbers = [f"+569{tag[:4].translate(str.maketrans('abcdef', '123456'))}{i}{k:03d}" for k in range(phones)]
        persons.append(Person(numbers, {numbers[0]: outcomes}))
    clock = SimClock(start, speed=600)
    try:
        async with RetellSimulator(api_key=API_KEY, clock=clock, seed=len(people)) as sim:
            script(sim, persons)
            plan = Plan.UNLIMITED if credits is None else Plan.CREDITS
            await Account(id=account, plan=plan, balance_cents=credits or 0).insert()
            dnc = {persons[-1].phones[-1]} if listed else set()
            for key in dnc:
                await DoNotCall(account_id=account, key=key, added_at=start).insert()
            await seed_batch(batch, persons, batch_settings, start, account=account)
            config = make_config(db, mongo_uri, tmp_path)
            if credits is None:
                await run_campaign(db, config, clock, sim, timeout=60)
            else:
                # An account out of credit keeps its jobs waiting for a top-up: stop once that is all that is left.
                async def body(*_: object) -> None:
                    await wait_for(lambda: stalled(account, batch), within=60)

                await drive(db, config, clock, sim, body, within=60)
            dials, found = await check_log(sim, dnc={account: dnc})
        assert found == []
        if credits is not None:  # never spent more than the balance it started with
            charged = sum(math.ceil(round(d.cost_cents, 6)) for d in dials)
            got = await Account.get(account)
            assert charged <= credits and got.balance_cents == credits - charged and got.reserved_cents == 0
    finally:
        for model in DOCUMENT_MODELS:
            await model.get_pymongo_collection().delete_many({})
