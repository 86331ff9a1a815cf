"""Per-batch call settings: validated, with defaults, stored on the batch (never copied into jobs)."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class HourRange(BaseModel):
    """Local wall-clock range [start, end) in the batch's timezone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> HourRange:
        if self.end <= self.start:
            raise ValueError(f"allowed hour range end {self.end} must be after start {self.start}")
        return self


class RetryDelays(BaseModel):
    """Minutes to wait before the next try, per outcome class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_answer: int = Field(60, ge=0)
    voicemail: int = Field(120, ge=0)
    conversation: int = Field(240, ge=0)
    provider_error: int = Field(30, ge=0)
    capacity: int = Field(2, ge=0)


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
    priority: int = Field(0, ge=0, le=100)

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

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
