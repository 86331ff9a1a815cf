"""Jurisdiction presets narrow and never widen; settings round-trip, including through MongoDB."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from pydantic import ValidationError

from speechai.domain.caps import PersonPolicy, policy_for
from speechai.domain.presets import Preset, apply_preset, preset_person_policy
from speechai.domain.settings import CallSettings, HourRange, quota_left
from speechai.store.models import Batch


def hours(s: CallSettings) -> list[tuple[time, time]]:
    return [(r.start, r.end) for r in s.allowed_hours]


def test_chile_narrows_a_wide_batch() -> None:
    s = CallSettings(allowed_hours=[{"start": "07:00", "end": "22:00"}], days_of_week=[1, 2, 3, 4, 5, 6, 7],
                     holidays_country=None, preset="chile")
    e = s.effective()
    assert hours(e) == [(time(8), time(20))]
    assert e.days_of_week == [1, 2, 3, 4, 5, 6]
    assert e.holiday_countries == ["CL"]
    assert policy_for(s) == PersonPolicy(max_calls_per_day=3, max_no_answer_days=3, rolling_window_days=7,
                                         max_calls_in_window=1)
    assert e.effective() == e  # idempotent


def test_chile_keeps_a_narrower_batch() -> None:
    s = CallSettings(allowed_hours=[{"start": "10:00", "end": "12:00"}], days_of_week=[2, 4], preset="chile")
    e = s.effective()
    assert hours(e) == [(time(10), time(12))] and e.days_of_week == [2, 4]


def test_chile_clips_each_range_and_drops_waves_outside() -> None:
    s = CallSettings(allowed_hours=[{"start": "06:00", "end": "09:00"}, {"start": "19:00", "end": "23:00"}],
                     waves=["06:30", "08:00", "21:00"], preset="chile")
    e = s.effective()
    assert hours(e) == [(time(8), time(9)), (time(19), time(20))]
    assert e.waves == [time(8)]


def test_us_reg_f() -> None:
    s = CallSettings(allowed_hours=[{"start": "07:00", "end": "22:00"}], days_of_week=[1, 2, 3, 4, 5, 6, 7],
                     holidays_country=None, timezone="America/New_York", preset="us_reg_f")
    e = s.effective()
    assert hours(e) == [(time(8), time(21))] and e.days_of_week == [1, 2, 3, 4, 5, 6, 7]
    assert e.holiday_countries == []
    p = policy_for(s)
    assert (p.rolling_window_days, p.max_calls_in_window, p.quiet_days_after_conversation) == (7, 7, 7)


def test_person_policy_takes_the_tighter_field() -> None:
    base = PersonPolicy(max_calls_per_day=2, max_no_answer_days=5, rolling_window_days=3, max_calls_in_window=2,
                        quiet_days_after_conversation=10)
    p = preset_person_policy(Preset.US_REG_F, base)
    assert p == PersonPolicy(max_calls_per_day=2, max_no_answer_days=5, rolling_window_days=7,
                             max_calls_in_window=2, quiet_days_after_conversation=10)
    assert preset_person_policy(Preset.NONE, base) == base


def test_preset_leaving_nothing_is_a_validation_error_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"allowed_hours \[21:00-22:00\].*chile"):
        CallSettings(allowed_hours=[{"start": "21:00", "end": "22:00"}], preset="chile")
    with pytest.raises(ValidationError, match=r"days_of_week \[7\].*chile"):
        CallSettings(days_of_week=[7], preset="chile")


def test_apply_preset_to_unpreset_settings_records_it() -> None:
    e = apply_preset(CallSettings(allowed_hours=[{"start": "07:00", "end": "22:00"}]), Preset.CHILE)
    assert e.preset == Preset.CHILE and hours(e) == [(time(8), time(20))]


def test_validation_errors_name_field_and_value() -> None:
    with pytest.raises(ValidationError, match="holidays_country: 'ZZ'"):
        CallSettings(holidays_country="ZZ")
    with pytest.raises(ValidationError, match="max_calls_in_window=None"):
        CallSettings(person_policy={"rolling_window_days": 7})
    with pytest.raises(ValidationError, match="daily_quota"):
        CallSettings(daily_quota=0)
    with pytest.raises(ValidationError, match="extra_forbidden"):
        CallSettings(max_call_duration=300)


def test_quota_left() -> None:
    assert quota_left(CallSettings(), 500) is None
    s = CallSettings(daily_quota=60)
    assert (quota_left(s, 0), quota_left(s, 59), quota_left(s, 75)) == (60, 1, 0)


FULL = CallSettings(
    allowed_hours=[HourRange(start=time(9), end=time(12)), HourRange(start=time(14), end=time(18, 30))],
    days_of_week=[1, 3, 5], timezone="America/Santiago", holidays_country="CL", extra_holiday_countries=["AR"],
    closed_dates=[date(2026, 12, 24)], waves=[time(9), time(14)], daily_quota=60, preset="chile",
    person_policy={"max_calls_per_day": 2, "rolling_window_days": 7, "max_calls_in_window": 2},
)


def test_round_trip_through_dump_and_json() -> None:
    assert CallSettings.model_validate(FULL.model_dump()) == FULL
    assert CallSettings.model_validate_json(FULL.model_dump_json()) == FULL
    assert CallSettings.model_validate(FULL.model_dump(mode="json")) == FULL


async def test_round_trip_through_the_store(db: object) -> None:
    batch = Batch(id="b-settings", account_id="acme", call_settings=FULL, created_at=datetime(2026, 3, 1, tzinfo=UTC))
    await batch.insert()
    loaded = await Batch.get("b-settings")
    assert loaded is not None and loaded.call_settings == FULL
    assert loaded.call_settings.effective() == FULL.effective()
