"""Call settings cannot be made invalid: every value is bounded, typed strictly and named when refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from annotated_types import Le
from pydantic import BaseModel, ValidationError

from speechai.domain.caps import CapVerdict
from speechai.domain.decision import HORIZON, decide_next, step_for_caps
from speechai.domain.outcomes import Classification, OutcomeClass
from speechai.domain.settings import (
    MAX_RETRY_DELAY_MIN,
    CallSettings,
    PersonPolicySettings,
    RetryDelays,
)
from speechai.store.models import Batch


def refused(payload: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        CallSettings.model_validate(payload)
    return err.value


def locs(err: ValidationError) -> set[str]:
    return {".".join(map(str, e["loc"])) for e in err.errors()}


# 1. Time zones that made ZoneInfo raise IsADirectoryError / OSError / ValueError -----------------------

@pytest.mark.parametrize("zone", ["America", "Etc", "x" * 300, "../../etc/passwd", "America/\x00Santiago",
                                  "", "/etc/localtime", "america/santiago", "Mars/Olympus"])
def test_bad_timezone_is_a_validation_error_naming_field_value_and_example(zone: str) -> None:
    err = refused({"timezone": zone})
    [problem] = err.errors()
    assert problem["loc"] == ("timezone",) and problem["input"] == zone
    assert "IANA" in problem["msg"] and "America/Santiago" in problem["msg"]
    assert repr(zone[:60]) in problem["msg"]
    assert len(problem["msg"]) < 250  # a long value is shortened, not echoed whole


def test_a_long_timezone_is_shortened_with_its_length() -> None:
    [problem] = refused({"timezone": "x" * 300}).errors()
    assert "(300 characters)" in problem["msg"] and "x" * 61 not in problem["msg"]


@pytest.mark.parametrize("zone", ["America/Santiago", "America/New_York", "UTC", "Europe/Madrid"])
def test_real_timezones_are_accepted(zone: str) -> None:
    assert CallSettings(timezone=zone).tz.key == zone


# 2. Times are "HH:MM" / "HH:MM:SS" text or time objects, never numbers ---------------------------------

@pytest.mark.parametrize("start", [0, 3600, 9.5, True, "9", "9:00", "25:00", "09:60", "09:00+03:00", "0900",
                                   {"h": 9}, [9, 0], None, "09:00:00Z"])
def test_a_time_that_is_not_hh_mm_text_names_its_field(start: object) -> None:
    err = refused({"allowed_hours": [{"start": start, "end": "13:00"}]})
    assert locs(err) == {"allowed_hours.0.start"}, err.errors()


def test_waves_must_be_times_too() -> None:
    assert locs(refused({"waves": [3600]})) == {"waves.0"}


@pytest.mark.parametrize("text, expected", [("09:00", time(9)), ("09:00:30", time(9, 0, 30)),
                                            ("23:59:59.5", time(23, 59, 59, 500000))])
def test_hh_mm_text_and_time_objects_are_accepted(text: str, expected: time) -> None:
    s = CallSettings(allowed_hours=[{"start": text, "end": time(23, 59, 59, 999999)}])
    assert s.allowed_hours[0].start == expected
    assert CallSettings.model_validate(s.model_dump(mode="json")) == s  # stored text reads back


def test_closed_dates_are_dates_not_timestamps() -> None:
    assert locs(refused({"closed_dates": [0]})) == {"closed_dates.0"}
    assert locs(refused({"closed_dates": ["2026-02-30"]})) == {"closed_dates.0"}
    assert CallSettings(closed_dates=["2026-12-24"]).closed_dates == [date(2026, 12, 24)]


# 3. Every number has an upper bound; lists and text are bounded ----------------------------------------

def int_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(int_fields(ann, f"{prefix}{name}."))
        elif "int" in str(ann) and "list" not in str(ann):
            out.append((f"{prefix}{name}", field))
    return out


INT_FIELDS = int_fields(CallSettings)


def test_every_integer_setting_has_an_upper_bound() -> None:
    names = {n for n, _ in INT_FIELDS}
    assert {"max_call_duration_s", "ring_timeout_s", "max_attempts", "priority", "daily_quota",
            "retry_delay_min.no_answer", "retry_delay_min.capacity", "person_policy.max_calls_per_day",
            "person_policy.quiet_days_after_conversation"} <= names
    unbounded = [n for n, f in INT_FIELDS if not any(isinstance(m, Le) for m in f.metadata)]
    assert unbounded == []


def nested(dotted: str, value: object) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    return {head: nested(rest, value) if rest else value}


@pytest.mark.parametrize("name", [n for n, _ in INT_FIELDS])
@pytest.mark.parametrize("value", [10**30, 2**63, -(2**63) - 1, True])
def test_huge_or_boolean_integers_are_refused_naming_the_field(name: str, value: int) -> None:
    err = refused(nested(name, value))
    assert name in locs(err), err.errors()


def largest() -> CallSettings:
    top = {n: next(m.le for m in f.metadata if isinstance(m, Le)) for n, f in INT_FIELDS}
    policy = {k.split(".", 1)[1]: v for k, v in top.items() if k.startswith("person_policy.")}
    delays = {k.split(".", 1)[1]: v for k, v in top.items() if k.startswith("retry_delay_min.")}
    flat = {k: v for k, v in top.items() if "." not in k}
    return CallSettings(**flat, retry_delay_min=RetryDelays(**delays), person_policy=PersonPolicySettings(**policy))


def test_the_largest_settings_are_the_documented_limits() -> None:
    s = largest()
    assert (s.max_call_duration_s, s.ring_timeout_s, s.max_attempts, s.daily_quota, s.priority) == \
        (7_200, 300, 100, 1_000_000, 100)
    assert s.retry_delay_min.no_answer == MAX_RETRY_DELAY_MIN == 30 * 24 * 60
    assert (s.person_policy.max_calls_per_day, s.person_policy.rolling_window_days) == (1_000, 366)


async def test_the_largest_settings_are_written_to_the_database_and_read_back(db: object) -> None:
    # 2**63 here used to raise OverflowError inside the driver: every bound is far inside int64
    s = largest()
    await Batch(id="b-max", account_id="acme", call_settings=s, created_at=datetime(2026, 3, 1, tzinfo=UTC)).insert()
    loaded = await Batch.get("b-max")
    assert loaded is not None and loaded.call_settings == s


@pytest.mark.parametrize("payload, field", [
    ({"allowed_hours": [{"start": f"{h:02d}:00", "end": f"{h:02d}:30"} for h in range(24)] * 2}, "allowed_hours"),
    ({"waves": [f"{h:02d}:{m:02d}" for h in range(9, 20) for m in range(0, 60, 10)]}, "waves"),
    ({"days_of_week": [1, 2, 3, 4, 5, 6, 7, 1]}, "days_of_week"),
    ({"days_of_week": [0]}, "days_of_week"),
    ({"days_of_week": []}, "days_of_week"),
    ({"holidays_country": "XX"}, "holidays_country"),
    ({"holidays_country": "C" * 300}, "holidays_country"),
    ({"holidays_country": ""}, "holidays_country"),
    ({"holidays_country": 56}, "holidays_country"),
    ({"extra_holiday_countries": ["AR"] * 11}, "extra_holiday_countries"),
    ({"closed_dates": ["2026-01-01"] * 1001}, "closed_dates"),
])
def test_lists_and_text_are_bounded(payload: dict[str, Any], field: str) -> None:
    err = refused(payload)
    assert any(loc == field or loc.startswith(field + ".") for loc in locs(err)), err.errors()


def test_a_country_the_holiday_calendar_does_not_know_is_named() -> None:
    [problem] = refused({"holidays_country": "C" * 300}).errors()
    assert "holidays_country" in problem["msg"] and "(300 characters)" in problem["msg"]
    assert CallSettings(holidays_country="us").holidays_country == "US"


# decide_next never overflows -----------------------------------------------------------------------

NOW = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)
OUTCOMES = [Classification(o, success=False, counts=True, answered=o == OutcomeClass.CONVERSATION, reason="r")
            for o in OutcomeClass if o != OutcomeClass.ACCOUNT]


@pytest.mark.parametrize("classification", OUTCOMES, ids=lambda c: c.outcome.value)
def test_decide_next_with_the_largest_allowed_delays_does_not_raise(classification: Classification) -> None:
    s = largest()
    step = decide_next(classification=classification, settings=s, now=NOW, attempts_counted=1, phones_usable_after=1)
    assert step.next_try_at is not None and NOW <= step.next_try_at <= NOW + timedelta(days=31)


def test_a_far_future_callback_is_clamped_to_the_horizon() -> None:
    no_answer = OUTCOMES[[c.outcome for c in OUTCOMES].index(OutcomeClass.NO_ANSWER)]
    step = decide_next(classification=no_answer, settings=largest(), now=NOW, attempts_counted=1,
                       phones_usable_after=1, callback_at=datetime(9999, 12, 31, tzinfo=UTC))
    assert step.action == "retry" and step.next_try_at is not None
    assert NOW + HORIZON <= step.next_try_at <= NOW + HORIZON + timedelta(days=7)


def test_delays_that_slipped_past_validation_are_clamped() -> None:
    # model_construct skips validation, as an old stored document or a bug elsewhere could
    huge = RetryDelays.model_construct(no_answer=10**12, voicemail=10**12, conversation=10**12,
                                       provider_error=10**12, capacity=10**12)
    s = CallSettings().model_copy(update={"retry_delay_min": huge})
    for c in OUTCOMES:
        step = decide_next(classification=c, settings=s, now=NOW, attempts_counted=1, phones_usable_after=1)
        assert step.next_try_at is None or step.next_try_at <= NOW + timedelta(minutes=MAX_RETRY_DELAY_MIN, days=2)
    verdict = CapVerdict(allowed=False, reason="window", retry_at=datetime(9999, 1, 1, tzinfo=UTC), exclude=False)
    step = step_for_caps(verdict, s, NOW)
    assert step is not None and step.next_try_at is not None and step.next_try_at <= NOW + HORIZON + timedelta(days=2)
