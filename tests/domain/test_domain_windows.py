"""Calendar math: DST both ways in America/Santiago (2026), days, holidays, ranges, waves."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from speechai.domain.settings import CallSettings, HourRange
from speechai.domain.windows import (
    first_instant_at,
    is_dialable,
    local_date,
    next_dialable,
    next_local_midnight,
    window_end,
)

SCL = ZoneInfo("America/Santiago")


def u(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def scl(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=SCL, fold=fold).astimezone(UTC)


def settings(hours: list[tuple[str, str]] = [("08:00", "20:00")], days: list[int] = [1, 2, 3, 4, 5, 6, 7],  # noqa: B006
             country: str | None = None, **kw: object) -> CallSettings:
    return CallSettings(allowed_hours=[{"start": a, "end": b} for a, b in hours], days_of_week=days,
                        holidays_country=country, **kw)


def test_2026_transition_dates_are_the_ones_tested() -> None:
    # fall-back: Sunday 5 April 00:00 -03 becomes Saturday 23:00 -04
    assert u(2026, 4, 5, 2, 59).astimezone(SCL).utcoffset() == timedelta(hours=-3)
    assert u(2026, 4, 5, 3, 0).astimezone(SCL).utcoffset() == timedelta(hours=-4)
    # spring-forward: Sunday 6 September 00:00 -04 becomes 01:00 -03
    assert u(2026, 9, 6, 3, 59).astimezone(SCL).utcoffset() == timedelta(hours=-4)
    assert u(2026, 9, 6, 4, 0).astimezone(SCL).utcoffset() == timedelta(hours=-3)


def test_spring_forward_range_starting_in_the_gap_opens_at_first_valid_instant() -> None:
    s = settings([("00:30", "02:00")])
    before = scl(2026, 9, 5, 23, 0)  # Saturday 23:00 -04
    opens = next_dialable(s, before)
    assert opens == u(2026, 9, 6, 4, 0)  # 01:00 -03, the instant the gap ends
    assert opens.astimezone(SCL).hour == 1
    assert not is_dialable(s, opens - timedelta(microseconds=1))
    assert window_end(s, opens) == scl(2026, 9, 6, 2, 0)


def test_spring_forward_normal_hours_open_at_local_eight() -> None:
    s = settings()
    assert next_dialable(s, scl(2026, 9, 5, 20, 0)) == u(2026, 9, 6, 11, 0)  # Sunday 08:00 -03
    assert next_dialable(s, scl(2026, 9, 5, 8, 0)) == scl(2026, 9, 5, 8, 0) == u(2026, 9, 5, 12, 0)


def test_fall_back_repeated_hour_is_dialable_both_times() -> None:
    s = settings([("23:00", "23:30")])
    first, second = scl(2026, 4, 4, 23, 10), scl(2026, 4, 4, 23, 10, fold=1)
    assert second - first == timedelta(hours=1)
    assert is_dialable(s, first) and is_dialable(s, second)
    between = scl(2026, 4, 4, 23, 45)  # first pass, after the range
    assert not is_dialable(s, between)
    # the wall clock jumps back into the range at the transition instant
    assert next_dialable(s, between) == u(2026, 4, 5, 3, 0)
    assert window_end(s, first) == scl(2026, 4, 4, 23, 30) == u(2026, 4, 5, 2, 30)
    assert window_end(s, second) == scl(2026, 4, 4, 23, 30, fold=1) == u(2026, 4, 5, 3, 30)


def test_fall_back_normal_hours() -> None:
    s = settings()
    assert next_dialable(s, scl(2026, 4, 4, 21, 0)) == u(2026, 4, 5, 12, 0)  # Sunday 08:00 -04
    assert window_end(s, u(2026, 4, 5, 12, 0)) == u(2026, 4, 6, 0, 0)  # 20:00 -04


def test_day_not_allowed_moves_to_next_allowed_day() -> None:
    s = settings(days=[1, 2, 3, 4, 5, 6])
    sunday_noon = scl(2026, 3, 1, 12, 0)
    assert not is_dialable(s, sunday_noon)
    assert next_dialable(s, sunday_noon) == scl(2026, 3, 2, 8, 0)


def test_window_closed_for_today_goes_to_next_days_opening() -> None:
    s = settings([("09:00", "18:00")])
    assert next_dialable(s, scl(2026, 3, 3, 18, 0)) == scl(2026, 3, 4, 9, 0)  # end is exclusive
    assert next_dialable(s, scl(2026, 3, 3, 6, 0)) == scl(2026, 3, 3, 9, 0)  # before opening: same day
    assert window_end(s, scl(2026, 3, 3, 18, 0)) is None


def test_chile_holidays_skip_independence_days() -> None:
    s = settings(country="CL", days=[1, 2, 3, 4, 5, 6])
    assert not is_dialable(s, scl(2026, 9, 18, 12, 0))  # Friday, Independence Day
    # Saturday 19 is Army Day, Sunday not allowed: Monday 21 September
    assert next_dialable(s, scl(2026, 9, 17, 21, 0)) == scl(2026, 9, 21, 8, 0)
    assert is_dialable(settings(country=None), scl(2026, 9, 18, 12, 0))


def test_closed_dates() -> None:
    s = settings(closed_dates=[date(2026, 3, 4)])
    assert next_dialable(s, scl(2026, 3, 3, 21, 0)) == scl(2026, 3, 5, 8, 0)


def test_multiple_ranges_and_adjacent_ranges_merge() -> None:
    s = settings([("14:00", "18:00"), ("09:00", "12:00")])
    assert [r.start for r in s.allowed_hours] == [time(9), time(14)]  # kept sorted
    assert next_dialable(s, scl(2026, 3, 3, 12, 30)) == scl(2026, 3, 3, 14, 0)
    assert window_end(s, scl(2026, 3, 3, 10, 0)) == scl(2026, 3, 3, 12, 0)
    merged = settings([("09:00", "12:00"), ("12:00", "15:00")])
    assert window_end(merged, scl(2026, 3, 3, 10, 0)) == scl(2026, 3, 3, 15, 0)


def test_waves_wait_for_the_next_wave_start_in_range() -> None:
    s = settings([("09:00", "18:00")], waves=["15:00", "09:00", "12:00"])
    assert s.waves == [time(9), time(12), time(15)]
    assert next_dialable(s, scl(2026, 3, 3, 10, 10)) == scl(2026, 3, 3, 12, 0)
    assert next_dialable(s, scl(2026, 3, 3, 12, 0)) == scl(2026, 3, 3, 12, 0)
    assert next_dialable(s, scl(2026, 3, 3, 15, 0, 1)) == scl(2026, 3, 4, 9, 0)
    # dialing itself stays open through the range; without waves the answer is "now"
    assert is_dialable(s, scl(2026, 3, 3, 10, 10))
    assert next_dialable(s, scl(2026, 3, 3, 10, 10), use_waves=False) == scl(2026, 3, 3, 10, 10)


def test_waves_skip_days_not_allowed() -> None:
    s = settings([("09:00", "18:00")], days=[1], waves=["09:00"])
    assert next_dialable(s, scl(2026, 3, 3, 10, 0)) == scl(2026, 3, 9, 9, 0)  # next Monday


def test_wave_outside_every_range_is_rejected_by_validation() -> None:
    with pytest.raises(ValueError, match="waves"):
        settings([("09:00", "12:00")], waves=["13:00"])


def test_preset_is_applied_by_the_calendar_functions() -> None:
    s = settings([("07:00", "22:00")], preset="chile")
    assert not is_dialable(s, scl(2026, 3, 3, 7, 30))
    assert next_dialable(s, scl(2026, 3, 3, 7, 30)) == scl(2026, 3, 3, 8, 0)
    assert not is_dialable(s, scl(2026, 3, 1, 12, 0))  # Sunday


def test_settings_allowing_nothing_raise_instead_of_looping() -> None:
    sundays = [date(2026, 3, 1) + timedelta(weeks=k) for k in range(70)]
    s = settings(days=[7], closed_dates=sundays)
    with pytest.raises(ValueError, match="no dialable instant"):
        next_dialable(s, u(2026, 3, 1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        is_dialable(settings(), datetime(2026, 3, 3, 12))


def test_local_date_and_midnights() -> None:
    s = settings()
    assert local_date(s, u(2026, 3, 3, 2, 0)) == date(2026, 3, 2)  # 23:00 -03 the day before
    # the local day after Saturday 5 September starts at the gap's end, 01:00 -03
    assert next_local_midnight(SCL, scl(2026, 9, 5, 12, 0)) == u(2026, 9, 6, 4, 0)
    # fall-back repeats Saturday 23:00-24:00, so Sunday begins two hours after 22:00 -03
    assert next_local_midnight(SCL, scl(2026, 4, 4, 12, 0)) == u(2026, 4, 5, 4, 0)
    assert first_instant_at(SCL, date(2026, 4, 4), time(23, 30)) == u(2026, 4, 5, 2, 30)


def test_hour_range_validation_names_the_values() -> None:
    with pytest.raises(ValueError, match="end 09:00:00 must be after start 10:00:00"):
        HourRange(start=time(10), end=time(9))
    with pytest.raises(ValueError, match="days_of_week"):
        settings(days=[0, 8])
    with pytest.raises(ValueError, match="Mars/Olympus"):
        settings(timezone="Mars/Olympus")
