"""Per-batch call settings: validated, with defaults, stored on the batch (never copied into jobs).

Validation errors name the field and the offending value. A jurisdiction ``preset`` only narrows what
the batch asks for; ``effective()`` gives the settings with the preset applied, and every calendar
function applies it again itself (it is idempotent), so a preset cannot be bypassed.
"""

from __future__ import annotations

from datetime import date, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from speechai.domain.presets import Preset

if TYPE_CHECKING:
    from speechai.domain.caps import PersonPolicy


class HourRange(BaseModel):
    """Local wall-clock range [start, end) in the batch's timezone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> HourRange:
        if self.end <= self.start:
            raise ValueError(f"allowed hour range end {self.end} must be after start {self.start}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(f"allowed hour range {self.start}-{self.end} must be local wall times "
                             "without a UTC offset (the batch's timezone applies)")
        return self

    def contains(self, t: time) -> bool:
        return self.start <= t < self.end


class RetryDelays(BaseModel):
    """Minutes to wait before the next try, per outcome class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_answer: int = Field(60, ge=0)
    voicemail: int = Field(120, ge=0)
    conversation: int = Field(240, ge=0)
    provider_error: int = Field(30, ge=0)
    capacity: int = Field(2, ge=0)


class PersonPolicySettings(BaseModel):
    """Per-person limits across the account's batches (see ``caps.PersonPolicy``); None = no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_calls_per_day: int | None = Field(3, ge=1)
    max_no_answer_days: int | None = Field(3, ge=1)
    rolling_window_days: int | None = Field(None, ge=1, le=366)
    max_calls_in_window: int | None = Field(None, ge=1)
    quiet_days_after_conversation: int | None = Field(None, ge=1, le=366)

    @model_validator(mode="after")
    def _window_pair(self) -> PersonPolicySettings:
        if (self.rolling_window_days is None) != (self.max_calls_in_window is None):
            raise ValueError(
                "person_policy.rolling_window_days and person_policy.max_calls_in_window go together, got "
                f"rolling_window_days={self.rolling_window_days}, max_calls_in_window={self.max_calls_in_window}"
            )
        return self

    def to_policy(self) -> PersonPolicy:
        from speechai.domain.caps import PersonPolicy

        return PersonPolicy(**self.model_dump())


class CallSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_call_duration_s: int = Field(600, ge=30, le=7200)
    ring_timeout_s: int = Field(30, ge=5, le=120)
    max_attempts: int = Field(6, ge=1, le=50)
    retry_delay_min: RetryDelays = RetryDelays()
    allowed_hours: list[HourRange] = Field(
        default_factory=lambda: [HourRange(start=time(9), end=time(20))], min_length=1
    )
    days_of_week: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6], min_length=1)
    timezone: str = "America/Santiago"
    holidays_country: str | None = "CL"
    # Further country calendars whose public holidays are also skipped (presets add theirs here).
    extra_holiday_countries: list[str] = Field(default_factory=list)
    # Single closed dates (local), e.g. a company closure.
    closed_dates: list[date] = Field(default_factory=list)
    priority: int = Field(0, ge=0, le=100)
    # Local wave start times: when set, first dials and retries wait for the next wave start that
    # falls inside an allowed range.
    waves: list[time] = Field(default_factory=list)
    # People per local day; enforced by the scheduler (see ``quota_left``).
    daily_quota: int | None = Field(None, ge=1)
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
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {v!r}") from None
        return v

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
        from speechai.domain.presets import apply_preset

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
        from speechai.domain.presets import apply_preset

        return apply_preset(self, self.preset)


def quota_left(settings: CallSettings, dialed_today: int) -> int | None:
    """People the batch may still start dialing today; None = no quota."""
    if settings.daily_quota is None:
        return None
    return max(0, settings.daily_quota - dialed_today)


def _check_country(code: str, field: str) -> str:
    code = code.upper()
    if code not in holidays.list_supported_countries():
        raise ValueError(f"{field}: {code!r} is not a country with a known public-holiday calendar")
    return code


def merge_settings(defaults: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Raw settings ``override`` on top of ``defaults``, key by key, nested tables too."""
    out = dict(defaults)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge_settings(out[key], value) if nested else value
    return out
