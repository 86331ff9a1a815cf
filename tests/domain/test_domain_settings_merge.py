"""Partial settings updates (JSON merge-patch) never drop a preset; validation only ever raises ValueError."""

from __future__ import annotations

import math
from datetime import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from speechai.domain.caps import policy_for
from speechai.domain.presets import Preset
from speechai.domain.settings import CallSettings, merge_call_settings, settings_changes

CHILE = CallSettings(preset="chile", max_attempts=4, allowed_hours=[{"start": "09:00", "end": "13:00"},
                                                                    {"start": "15:00", "end": "19:00"}],
                     retry_delay_min={"no_answer": 90, "voicemail": 180}, daily_quota=60,
                     person_policy={"max_calls_per_day": 2})


def flat(s: CallSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in s.model_dump(mode="json").items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


# The reproduction: one edit used to reset everything, the preset included ------------------------------

def test_setting_max_attempts_on_a_chile_batch_keeps_the_preset_and_everything_else() -> None:
    after = merge_call_settings(CHILE, {"max_attempts": 3})
    assert after.preset == Preset.CHILE
    assert settings_changes(CHILE, after) == {"max_attempts": (4, 3)}
    assert after.effective().allowed_hours == CHILE.effective().allowed_hours
    assert policy_for(after).max_calls_in_window == 1  # the law's one call a week still holds


def test_nested_objects_merge_key_by_key_and_lists_replace() -> None:
    after = merge_call_settings(CHILE, {"retry_delay_min": {"no_answer": 15}, "days_of_week": [2, 4],
                                        "allowed_hours": [{"start": "10:00", "end": "12:00"}]})
    assert (after.retry_delay_min.no_answer, after.retry_delay_min.voicemail) == (15, 180)
    assert after.days_of_week == [2, 4] and [(r.start, r.end) for r in after.allowed_hours] == [(time(10), time(12))]
    assert set(settings_changes(CHILE, after)) == {"retry_delay_min.no_answer", "days_of_week", "allowed_hours"}


def test_null_resets_a_setting_to_its_default() -> None:
    after = merge_call_settings(CHILE, {"max_attempts": None, "retry_delay_min": {"voicemail": None}})
    assert after.max_attempts == 6 and after.retry_delay_min.voicemail == 120
    assert after.retry_delay_min.no_answer == 90 and after.preset == Preset.CHILE


def test_null_where_null_is_a_value_sets_it() -> None:
    # "no quota", "no holiday calendar", "no daily limit": what GET shows as null is sent back as null
    after = merge_call_settings(CHILE, {"daily_quota": None, "holidays_country": None,
                                        "person_policy": {"max_calls_per_day": None}})
    assert (after.daily_quota, after.holidays_country, after.person_policy.max_calls_per_day) == (None, None, None)
    assert after.effective().holiday_countries == ["CL"]  # the preset still adds Chile's calendar


def test_sending_back_what_get_returned_changes_nothing() -> None:
    for current in (CHILE, CallSettings(holidays_country=None, person_policy={"max_calls_per_day": None}),
                    CallSettings(preset="us_reg_f", timezone="America/Chicago", waves=["09:00", "12:00"])):
        assert merge_call_settings(current, current.model_dump(mode="json")) == current


def test_the_preset_changes_only_when_named_and_the_change_is_reported() -> None:
    off = merge_call_settings(CHILE, {"preset": "none"})
    assert off.preset == Preset.NONE and settings_changes(CHILE, off) == {"preset": ("chile", "none")}
    reset = merge_call_settings(CHILE, {"preset": None})
    assert settings_changes(CHILE, reset)["preset"] == ("chile", "none")
    us = merge_call_settings(CHILE, {"preset": "us_reg_f"})
    assert settings_changes(CHILE, us) == {"preset": ("chile", "us_reg_f")}


@pytest.mark.parametrize("patch, field", [
    ({"max_atempts": 3}, "max_atempts"),
    ({"max_atempts": None}, "max_atempts"),
    ({"retry_delay_min": {"no_anwser": 5}}, "retry_delay_min.no_anwser"),
    ({"person_policy": {"bogus": None}}, "person_policy.bogus"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"retry_delay_min": 5}, "retry_delay_min"),
    ({"allowed_hours": [{"start": 0, "end": "13:00"}]}, "allowed_hours.0.start"),
    ({"timezone": "America"}, "timezone"),
])
def test_bad_patches_raise_validation_errors_naming_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        merge_call_settings(CHILE, patch)
    assert field in {".".join(map(str, e["loc"])) for e in err.value.errors()}, err.value.errors()


def test_a_patch_that_leaves_the_preset_nothing_to_dial_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"20:30-22:00.*chile"):
        merge_call_settings(CHILE, {"allowed_hours": [{"start": "20:30", "end": "22:00"}]})


@pytest.mark.parametrize("patch", [[], "max_attempts=3", 3, None])
def test_a_patch_that_is_not_an_object_is_a_validation_error(patch: Any) -> None:
    with pytest.raises(ValidationError):
        merge_call_settings(CHILE, patch)


def test_no_change_is_an_empty_dict() -> None:
    assert settings_changes(CHILE, merge_call_settings(CHILE, {})) == {}
    assert merge_call_settings(CHILE, {}) == CHILE


# Properties ----------------------------------------------------------------------------------------

def hour_ranges() -> st.SearchStrategy[list[dict[str, str]]]:
    # inside Chile's 08:00-20:00 so that any patch stays valid under the preset
    def one(pair: tuple[int, int]) -> dict[str, str]:
        a, b = sorted(pair)
        return {"start": f"{a:02d}:00", "end": f"{b + 1:02d}:00"}
    return st.lists(st.tuples(st.integers(8, 19), st.integers(8, 19)).map(one), min_size=1, max_size=3)


VALID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "max_call_duration_s": st.integers(60, 7_200),
    "ring_timeout_s": st.integers(5, 300),
    "max_attempts": st.integers(1, 100) | st.none(),
    "retry_delay_min": st.dictionaries(st.sampled_from(["no_answer", "voicemail", "conversation", "provider_error",
                                                        "capacity"]), st.integers(0, 43_200) | st.none()),
    "allowed_hours": hour_ranges(),
    "days_of_week": st.lists(st.integers(1, 6), min_size=1, max_size=6, unique=True),
    "timezone": st.sampled_from(["America/Santiago", "America/New_York", "UTC", "Europe/Madrid"]),
    "holidays_country": st.sampled_from(["CL", "US", "AR", None]),
    "extra_holiday_countries": st.lists(st.sampled_from(["AR", "PE", "MX"]), max_size=3),
    "closed_dates": st.lists(st.dates().map(str), max_size=3),
    "priority": st.integers(0, 100),
    "daily_quota": st.integers(1, 1_000_000) | st.none(),
    "person_policy": st.dictionaries(st.sampled_from(["max_calls_per_day", "max_no_answer_days"]),
                                     st.integers(1, 366) | st.none()),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patch=st.dictionaries(st.sampled_from(sorted(VALID_VALUES)), st.none()).flatmap(
    lambda keys: st.fixed_dictionaries({k: VALID_VALUES[k] for k in keys})))
def test_a_valid_patch_keeps_every_field_it_does_not_mention(patch: dict[str, Any]) -> None:
    after = merge_call_settings(CHILE, patch)
    assert after.preset == Preset.CHILE
    touched = {k for k, v in patch.items() if not isinstance(v, dict)}
    touched |= {f"{k}.{sub}" for k, v in patch.items() if isinstance(v, dict) for sub in v}
    before, now = flat(CHILE), flat(after)
    for key in before:
        if key not in touched:
            assert now[key] == before[key], key
    assert set(settings_changes(CHILE, after)) <= touched
    assert policy_for(after).max_calls_in_window == 1


FIELDS = [*sorted(CallSettings.model_fields), "start", "end", "no_answer", "max_calls_per_day"]
scalars = (st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.text(min_size=500, max_size=2_000) | st.sampled_from(
               ["09:00", "America", "Etc", "../../etc/passwd", "a\x00b", "CL", "chile", "2026-02-30", "24:00"]))
json_like = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=4),
                         max_leaves=20)
shaped = st.fixed_dictionaries({}, optional={
    "allowed_hours": st.lists(st.fixed_dictionaries({}, optional={"start": json_like, "end": json_like}), max_size=3),
    "retry_delay_min": st.dictionaries(st.sampled_from(["no_answer", "capacity", "x"]), json_like, max_size=3),
    "person_policy": st.dictionaries(st.sampled_from(["max_calls_per_day", "rolling_window_days"]), json_like,
                                     max_size=2),
    **{name: json_like for name in CallSettings.model_fields},
})


def validate_both_ways(payload: Any) -> None:
    for run in (lambda: CallSettings.model_validate(payload), lambda: merge_call_settings(CHILE, payload)):
        try:
            run()
        except ValueError as exc:  # ValidationError is a ValueError; nothing else may escape
            if isinstance(exc, ValidationError):
                exc.errors()
                str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=json_like | shaped)
def test_validation_never_raises_anything_but_value_errors(payload: Any) -> None:
    validate_both_ways(payload)


def deep(levels: int, leaf: Any, kind: str) -> Any:
    for _ in range(levels):
        leaf = {"start": leaf} if kind == "dict" else [leaf]
    return leaf


@pytest.mark.parametrize("kind", ["dict", "list"])
@pytest.mark.parametrize("key", ["timezone", "allowed_hours", "retry_delay_min", "person_policy", "waves", "nope"])
def test_deep_nesting_is_a_validation_error(kind: str, key: str) -> None:
    payload = {key: deep(300, 1, kind)}
    validate_both_ways(payload)
    with pytest.raises(ValidationError):
        merge_call_settings(CHILE, payload)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, 10**4000, "9" * 5_000, "x" * 1_000_000])
def test_extreme_scalars_in_every_field_are_validation_errors(value: Any) -> None:
    for name in CallSettings.model_fields:
        if name == "preset":
            continue
        with pytest.raises(ValidationError):
            merge_call_settings(CHILE, {name: value})
