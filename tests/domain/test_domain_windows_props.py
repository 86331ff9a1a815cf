"""Properties of next_dialable / window_end over random settings and instants (minute granularity)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from speechai.domain.settings import CallSettings
from speechai.domain.windows import is_dialable, next_dialable, window_end

# Zones with DST at midnight (Santiago, Havana), half-hour DST (Lord Howe), southern/northern, none.
ZONES = ["America/Santiago", "America/Havana", "Australia/Lord_Howe", "America/New_York", "Europe/London",
         "Asia/Kolkata", "UTC", "Pacific/Chatham"]
SPAN = timedelta(hours=60)  # minutes checked between the input and the answer


@st.composite
def call_settings(draw: st.DrawFn, with_waves: bool) -> CallSettings:
    minutes = sorted(draw(st.sets(st.integers(0, 24 * 4 - 1), min_size=2, max_size=6)))  # quarter hours
    ends = [(a, b) for a, b in zip(minutes[::2], minutes[1::2], strict=False)]
    ranges = [{"start": time(a // 4, a % 4 * 15), "end": time(b // 4, b % 4 * 15)} for a, b in ends]
    days = sorted(draw(st.sets(st.integers(1, 7), min_size=1)))
    waves: list[time] = []
    if with_waves:
        a, b = draw(st.sampled_from(ends))
        waves = [time(q // 4, q % 4 * 15) for q in draw(st.sets(st.integers(a, b - 1), min_size=1, max_size=3))]
    preset = draw(st.sampled_from(["none", "none", "chile", "us_reg_f"])) if not waves else "none"
    try:
        return CallSettings(
            allowed_hours=ranges,
            days_of_week=days,
            timezone=draw(st.sampled_from(ZONES)),
            holidays_country=draw(st.sampled_from([None, "CL", "US"])),
            waves=waves,
            preset=preset,
        )
    except ValidationError:  # a preset leaving nothing to dial is refused by design
        reject()


# Instants clustered around 2026's DST changes in both hemispheres, at random seconds.
ANCHORS = [datetime(2026, m, d, tzinfo=UTC) for m, d in ((3, 8), (3, 29), (4, 5), (9, 6), (9, 27), (11, 1))]
instants = st.builds(lambda a, s: a + timedelta(seconds=s), st.sampled_from(ANCHORS),
                     st.integers(-3 * 86400, 3 * 86400))


def _minutes_after(at: datetime, until: datetime) -> list[datetime]:
    first = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    out, m = [], first
    while m < until and m - at < SPAN:
        out.append(m)
        m += timedelta(minutes=1)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_settings(with_waves=False), instants)
def test_next_dialable_is_the_earliest_dialable_instant(s: CallSettings, at: datetime) -> None:
    nxt = next_dialable(s, at)
    assert nxt >= at
    assert is_dialable(s, nxt)
    if is_dialable(s, at):
        assert nxt == at
    assert not any(is_dialable(s, m) for m in _minutes_after(at, nxt))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_settings(with_waves=False), instants)
def test_window_end_closes_the_open_stretch(s: CallSettings, at: datetime) -> None:
    start = next_dialable(s, at)
    end = window_end(s, start)
    assert end is not None and end > start
    assert not is_dialable(s, end)
    assert all(is_dialable(s, m) for m in _minutes_after(start, end))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_settings(with_waves=True), instants)
def test_waves_give_the_earliest_dialable_wave_start(s: CallSettings, at: datetime) -> None:
    nxt = next_dialable(s, at)
    tz = s.tz
    assert nxt >= at and is_dialable(s, nxt)
    local = nxt.astimezone(tz)
    before = (nxt - timedelta(microseconds=1)).astimezone(tz)
    # a wave wall time, or the first instant after a DST gap that swallowed the wave
    wall, wall_before = local.replace(tzinfo=None), before.replace(tzinfo=None)
    assert local.time() in s.waves or (wall - wall_before > timedelta(seconds=1) and any(
        wall_before < datetime.combine(wall.date(), w) < wall for w in s.waves))
    for m in _minutes_after(at, nxt):
        lm = m.astimezone(tz)
        assert not (lm.time() in s.waves and is_dialable(s, m)), m
