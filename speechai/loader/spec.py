"""What to load: one ``[[batches]]`` entry of ``config.toml`` (or one upload)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

from speechai.domain.segments import SegmentRule, check_rules
from speechai.domain.settings import CallSettings
from speechai.loader.columns import FORMAT_USE_CASE

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class BatchSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: Path
    account: str
    batch_id: str
    name: str = ""
    format: Literal["auto", "collection", "marketing", "generic", "reminder", "survey"] = "auto"
    # The Chile caller-ID rule's use case (docs/dialing.md); unset: the format's (generic: none, unchecked).
    use_case: Literal["collection", "reminder", "survey", "marketing"] | None = None
    sheet: str | None = None
    agent_id: str | None = None
    from_number: str | None = None
    call_settings: CallSettings = CallSettings()
    columns: dict[str, str] = Field(default_factory=dict)  # header in file -> canonical field or variable
    agent_variables: list[str] = Field(default_factory=list)  # extra columns passed to the agent
    payment_deadline_days: int | None = Field(None, ge=0, le=365)  # "today + N days", batch timezone
    accept_partial: bool = False
    allow_duplicates_across_batches: bool = False
    default_region: str = "CL"
    # negotiation flows per debtor segment: ordered rules, the default last (docs/segments.md)
    segments: list[SegmentRule] = Field(default_factory=list)

    def use_case_for(self, fmt: str) -> str | None:
        """The declared use case, else the one ``fmt`` (the file's format, ``auto`` resolved) implies."""
        return self.use_case if "use_case" in self.model_fields_set else FORMAT_USE_CASE.get(fmt)

    @field_validator("account", "batch_id")
    @classmethod
    def _slug(cls, v: str) -> str:
        # Both end up inside the jobs' dedup keys ('account:batch:person'), so no ':' or spaces.
        if not _SLUG.match(v):
            raise ValueError(f"{v!r} must be letters, digits, '_', '.', '-' (max 100), without spaces or ':'")
        return v

    @field_validator("segments")
    @classmethod
    def _segments(cls, v: list[SegmentRule]) -> list[SegmentRule]:
        return check_rules(v)

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        v = v.upper()
        if v not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {v!r} (use an ISO country code such as 'CL')")
        return v

