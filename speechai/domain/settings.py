"""Per-batch call settings: validated, with defaults, stored on the batch (never copied into jobs).

Validation errors name the field, the offending value and the limit. Every number has an upper bound
(the ``MAX_*`` constants, documented in docs/policy.md), every list a maximum length and every text field a
closed set of values, so no accepted setting can overflow a date, a BSON integer or a provider field later.

A jurisdiction ``preset`` only narrows what the batch asks for; ``effective()`` gives the settings
with the preset applied, and every calendar function applies it again itself (it is idempotent), so
a preset cannot be bypassed. ``merge_call_settings`` applies a partial update and never drops a
preset the update does not name.

Imports go one way: ``policy_types`` (plain data) ← ``settings`` ← ``presets`` / ``caps``.
"""

from __future__ import annotations

import re
import types
import typing
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from speechai.domain.policy_types import PersonPolicy, Preset, preset_person_policy, rules_of

# --- limits ---------------------------------------------------------------------------------------
# Each bound is what still makes sense for a campaign; all are far inside what dates, timedeltas and
# BSON int64 can hold, so no accepted value can overflow later.

MAX_RETRY_DELAY_MIN = 43_200  # 30 days in minutes
MIN_CALL_DURATION_S, MAX_CALL_DURATION_S = 60, 7_200  # Retell max_call_duration_ms: 60,000–7,200,000
MIN_RING_TIMEOUT_S, MAX_RING_TIMEOUT_S = 5, 300  # Retell ring_duration_ms: 5,000–300,000
MAX_ATTEMPTS = 100
MAX_DAILY_QUOTA = 1_000_000
MIN_PRIORITY, MAX_PRIORITY = 0, 100
MAX_PERSON_COUNT = 1_000  # calls a day, calls in a window
MAX_PERSON_DAYS = 366  # no-answer days, window length, quiet period
MAX_HOUR_RANGES = 24
MAX_WAVES = 48
MAX_EXTRA_COUNTRIES = 10
MAX_CLOSED_DATES = 1_000
MAX_TIMEZONE_LEN = 64  # the longest IANA name has 32 characters
MAX_COUNTRY_LEN = 3  # ISO 3166 alpha-2 or alpha-3

_SHOWN = 60  # characters of an offending value quoted in an error


def short(value: object) -> str:
    """``repr`` of a value, cut to a readable length (an error must not echo a megabyte back)."""
    if isinstance(value, str) and len(value) > _SHOWN:
        return f"{value[:_SHOWN]!r}… ({len(value)} characters)"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int of thousands of digits, a structure nested too deep
        return f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


# --- strict scalar types --------------------------------------------------------------------------

_TIME_TEXT = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")


def _wall_time(value: object) -> time:
    """Only "HH:MM" / "HH:MM:SS" text or a ``time`` object: an integer is not a time of day."""
    if isinstance(value, time):
        return value  # offsets are refused by the model validators, with the field named
    if isinstance(value, str) and _TIME_TEXT.fullmatch(value):
        return time.fromisoformat(value)
    raise ValueError(f"must be a local time as 'HH:MM' or 'HH:MM:SS' text, got {short(value)}")


def _calendar_date(value: object) -> date:
    """"YYYY-MM-DD" text or a ``date``; a UTC-midnight ``datetime`` too (how BSON stores a date)."""
    if isinstance(value, datetime):
        if value.time() == time(0) and value.utcoffset() in (None, timedelta(0)):
            return value.date()
    elif isinstance(value, date):
        return value
    elif isinstance(value, str) and _DATE_TEXT.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"must be a calendar date as 'YYYY-MM-DD' text, got {short(value)}")


def _whole_number(value: object) -> object:
    # pydantic would read true as 1; a yes/no is never a count
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, got {value}")
    return value


LocalTime = Annotated[time, BeforeValidator(_wall_time)]
CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]
Whole = Annotated[int, BeforeValidator(_whole_number)]


@lru_cache(maxsize=1)
def iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=1)
def holiday_countries_known() -> frozenset[str]:
    return frozenset(holidays.list_supported_countries())


# --- models ---------------------------------------------------------------------------------------


class HourRange(BaseModel):
    """Local wall-clock range [start, end) in the batch's timezone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _ordered(self) -> HourRange:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(f"allowed hour range {self.start}-{self.end} must be local wall times "
                             "without a UTC offset (the batch's timezone applies)")
        if self.end <= self.start:
            raise ValueError(f"allowed hour range end {self.end} must be after start {self.start}")
        return self

    def contains(self, t: time) -> bool:
        return self.start <= t < self.end


def _delay(default: int) -> Any:
    return Field(default, ge=0, le=MAX_RETRY_DELAY_MIN)


class RetryDelays(BaseModel):
    """Minutes to wait before the next try, per outcome class (at most 30 days)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_answer: Whole = _delay(60)
    voicemail: Whole = _delay(120)
    conversation: Whole = _delay(240)
    provider_error: Whole = _delay(30)
    capacity: Whole = _delay(2)


class PersonPolicySettings(BaseModel):
    """Per-person limits across the account's batches (see ``caps.PersonPolicy``); None = no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_calls_per_day: Whole | None = Field(3, ge=1, le=MAX_PERSON_COUNT)
    max_no_answer_days: Whole | None = Field(3, ge=1, le=MAX_PERSON_DAYS)
    rolling_window_days: Whole | None = Field(None, ge=1, le=MAX_PERSON_DAYS)
    max_calls_in_window: Whole | None = Field(None, ge=1, le=MAX_PERSON_COUNT)
    quiet_days_after_conversation: Whole | None = Field(None, ge=1, le=MAX_PERSON_DAYS)

    @model_validator(mode="after")
    def _window_pair(self) -> PersonPolicySettings:
        if (self.rolling_window_days is None) != (self.max_calls_in_window is None):
            raise ValueError(
                "person_policy.rolling_window_days and person_policy.max_calls_in_window go together, got "
                f"rolling_window_days={self.rolling_window_days}, max_calls_in_window={self.max_calls_in_window}"
            )
        return self

    def to_policy(self) -> PersonPolicy:
        return PersonPolicy(**self.model_dump())


class CallSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_call_duration_s: Whole = Field(600, ge=MIN_CALL_DURATION_S, le=MAX_CALL_DURATION_S)
    ring_timeout_s: Whole = Field(30, ge=MIN_RING_TIMEOUT_S, le=MAX_RING_TIMEOUT_S)
    max_attempts: Whole = Field(6, ge=1, le=MAX_ATTEMPTS)
    retry_delay_min: RetryDelays = RetryDelays()
    allowed_hours: list[HourRange] = Field(
        default_factory=lambda: [HourRange(start=time(9), end=time(20))], min_length=1, max_length=MAX_HOUR_RANGES
    )
    days_of_week: list[Whole] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6], min_length=1, max_length=7)
    timezone: str = "America/Santiago"
    holidays_country: str | None = "CL"
    # Further country calendars whose public holidays are also skipped (presets add theirs here).
    extra_holiday_countries: list[str] = Field(default_factory=list, max_length=MAX_EXTRA_COUNTRIES)
    # Single closed dates (local), e.g. a company closure.
    closed_dates: list[CalendarDate] = Field(default_factory=list, max_length=MAX_CLOSED_DATES)
    priority: Whole = Field(0, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    # Local wave start times: when set, first dials and retries wait for the next wave start that
    # falls inside an allowed range.
    waves: list[LocalTime] = Field(default_factory=list, max_length=MAX_WAVES)
    # People per local day; enforced by the scheduler (see ``quota_left``).
    daily_quota: Whole | None = Field(None, ge=1, le=MAX_DAILY_QUOTA)
    preset: Preset = Preset.NONE
    person_policy: PersonPolicySettings = PersonPolicySettings()

    @field_validator("days_of_week")
    @classmethod
    def _iso_days(cls, v: list[int]) -> list[int]:
        bad = [d for d in v if d not in range(1, 8)]
        if bad:
            raise ValueError(f"days_of_week must be ISO days 1 (Monday) to 7 (Sunday), got {bad}")
        return sorted(set(v))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        # Membership first: ZoneInfo itself raises IsADirectoryError, OSError or ValueError on names such
        # as "America", a 300-character string or one with a NUL byte.
        if len(v) <= MAX_TIMEZONE_LEN and v in iana_zones():
            try:
                ZoneInfo(v)
                return v
            except (ZoneInfoNotFoundError, OSError, ValueError):
                pass
        raise ValueError(f"timezone {short(v)} is not an IANA time zone name; use one like 'America/Santiago'")

    @field_validator("holidays_country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        return None if v is None else _check_country(v, "holidays_country")

    @field_validator("extra_holiday_countries")
    @classmethod
    def _countries(cls, v: list[str]) -> list[str]:
        return sorted({_check_country(c, "extra_holiday_countries") for c in v})

    @field_validator("allowed_hours")
    @classmethod
    def _hours(cls, v: list[HourRange]) -> list[HourRange]:
        return sorted(set(v), key=lambda r: (r.start, r.end))

    @field_validator("waves")
    @classmethod
    def _waves(cls, v: list[time]) -> list[time]:
        aware = [w for w in v if w.tzinfo is not None]
        if aware:
            raise ValueError(f"waves must be local wall times without a UTC offset, got {aware}")
        return sorted(set(v))

    @field_validator("closed_dates")
    @classmethod
    def _closed(cls, v: list[date]) -> list[date]:
        return sorted(set(v))

    @model_validator(mode="after")
    def _coherent(self) -> CallSettings:
        outside = [w for w in self.waves if not any(r.contains(w) for r in self.allowed_hours)]
        if outside:
            raise ValueError(f"waves {[w.isoformat() for w in outside]} lie outside every allowed_hours range")
        # A preset that leaves nothing to dial is a configuration error, reported now, not at dial time.
        apply_preset(self, self.preset)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def holiday_countries(self) -> list[str]:
        countries = set(self.extra_holiday_countries)
        if self.holidays_country:
            countries.add(self.holidays_country)
        return sorted(countries)

    def effective(self) -> CallSettings:
        """These settings narrowed by their jurisdiction preset (idempotent; no-op without one)."""
        if self.preset == Preset.NONE:
            return self
        return apply_preset(self, self.preset)


def quota_left(settings: CallSettings, dialed_today: int) -> int | None:
    """People the batch may still start dialing today; None = no quota."""
    if settings.daily_quota is None:
        return None
    return max(0, settings.daily_quota - dialed_today)


def _check_country(code: str, field: str) -> str:
    upper = code.upper() if len(code) <= MAX_COUNTRY_LEN else ""
    if upper not in holiday_countries_known():
        raise ValueError(f"{field}: {short(code)} is not a country code with a known public-holiday calendar "
                         "(ISO 3166, e.g. 'CL', 'US')")
    return upper


# --- presets --------------------------------------------------------------------------------------


def apply_preset(settings: CallSettings, preset: Preset | str) -> CallSettings:
    """Intersect hours and days with the preset's, add its holiday calendar, tighten the person policy.

    Raises ValueError naming the field when the intersection leaves nothing to dial.
    """
    preset = Preset(preset)
    rules = rules_of(preset)
    if rules == rules_of(Preset.NONE):
        return settings
    update: dict[str, object] = {}
    if rules.hours is not None:
        lo, hi = rules.hours
        ranges = [HourRange(start=max(r.start, lo), end=min(r.end, hi))
                  for r in settings.allowed_hours if max(r.start, lo) < min(r.end, hi)]
        if not ranges:
            asked = ", ".join(f"{r.start:%H:%M}-{r.end:%H:%M}" for r in settings.allowed_hours)
            raise ValueError(f"allowed_hours [{asked}] lie outside preset {preset.value}'s "
                             f"{lo:%H:%M}-{hi:%H:%M}: nothing left to dial")
        update["allowed_hours"] = ranges
        waves = [w for w in settings.waves if any(r.contains(w) for r in ranges)]
        if settings.waves and not waves:
            # dropping every wave would mean "dial any time": that would widen, so refuse
            raise ValueError(f"waves {[w.isoformat() for w in settings.waves]} all lie outside preset "
                             f"{preset.value}'s {lo:%H:%M}-{hi:%H:%M}")
        update["waves"] = waves
    if rules.days is not None:
        days = sorted(set(settings.days_of_week) & rules.days)
        if not days:
            raise ValueError(f"days_of_week {settings.days_of_week} lie outside preset {preset.value}'s "
                             f"{sorted(rules.days)}: nothing left to dial")
        update["days_of_week"] = days
    if rules.holidays_country and rules.holidays_country not in settings.holiday_countries:
        update["extra_holiday_countries"] = sorted({*settings.extra_holiday_countries, rules.holidays_country})
    base = settings.person_policy.to_policy()
    tightened = preset_person_policy(preset, base)
    if tightened != base:
        update["person_policy"] = settings.person_policy.model_copy(update=vars(tightened))
    if settings.preset == Preset.NONE:
        update["preset"] = preset
    return settings.model_copy(update=update)


# --- partial updates ------------------------------------------------------------------------------


def merge_call_settings(current: CallSettings, patch: dict[str, Any]) -> CallSettings:
    """``current`` with the partial update ``patch`` applied and the result validated.

    JSON merge-patch (RFC 7396): nested objects (``retry_delay_min``, ``person_policy``) merge key by
    key, lists replace, a key left out keeps its value — ``preset`` above all: it changes only when the
    patch names it. An explicit ``null`` resets a key to its default, except on a setting where null is
    itself a value ("no limit", "no calendar": ``daily_quota``, ``holidays_country``, the
    ``person_policy`` limits), where it sets that value, so a GET body sent back unchanged changes
    nothing. Unknown keys and bad values raise pydantic's ``ValidationError`` naming the field.
    """
    if not isinstance(patch, dict):
        raise ValidationError.from_exception_data(
            CallSettings.__name__, [{"type": "dict_type", "loc": (), "input": patch}])
    return CallSettings.model_validate(_merge_patch(current.model_dump(mode="json"), patch, CallSettings))


def _merge_patch(target: dict[str, Any], patch: dict[Any, Any], model: type[BaseModel] | None) -> dict[str, Any]:
    out = dict(target)
    for key, value in patch.items():
        field = model.model_fields.get(key) if model is not None and isinstance(key, str) else None
        if field is None:
            out[key] = value  # unknown key: kept so that validation names it
        elif value is None:
            if _nullable(field):
                out[key] = None
            else:
                out.pop(key, None)  # back to the default
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            # only as deep as the schema nests (two levels), never as deep as the patch
            out[key] = _merge_patch(out[key], value, _submodel(field))
        else:
            out[key] = value
    return out


def _nullable(field: FieldInfo) -> bool:
    origin = typing.get_origin(field.annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(field.annotation)


def _submodel(field: FieldInfo) -> type[BaseModel] | None:
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def settings_changes(before: CallSettings, after: CallSettings) -> dict[str, tuple[Any, Any]]:
    """Every setting that differs, as dotted name → (before, after) in JSON form, sorted by name.

    Nested settings are named ``retry_delay_min.no_answer``; lists are compared whole. A preset
    turned off or changed shows as the ``preset`` key.
    """
    old, new = _flatten(before.model_dump(mode="json")), _flatten(after.model_dump(mode="json"))
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def merge_settings(defaults: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Raw settings ``override`` on top of ``defaults``, key by key, nested tables too (config files)."""
    out = dict(defaults)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge_settings(out[key], value) if nested else value
    return out
