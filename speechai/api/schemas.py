"""Request and response models of every route: they validate requests, shape answers, and are the source
of the OpenAPI document (``speechai.api.openapi``), so the document cannot drift from the code."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from speechai.domain.settings import CallSettings
from speechai.loader.normalize import parse_phone, parse_rut
from speechai.store.api_models import Role
from speechai.store.models import BatchStatus, JobState, Plan

PAGE_DEFAULT, PAGE_MAX = 100, 1000
MAX_CURSOR_CHARS = 1024
MAX_ID_CHARS = 256
# Bounds that keep one top-up far inside the database's 64-bit integers (a typo, not a real order).
MAX_TOPUP = {"cents": 10**12, "minutes": 10**9}
# An account's balance after a top-up may not pass this (US$ 100 million; minutes: 190 years).
MAX_BALANCE = {"cents": 10**10, "minutes": 10**8}
ACCOUNT_LIMITS = {"max_concurrent_calls": (1, 10_000), "daily_call_limit": (1, 10_000_000)}
MAX_JSON_ROWS = 10_000

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
Cursor = Annotated[str, Field(min_length=1, max_length=MAX_CURSOR_CHARS,
                              description="next_cursor of the previous page")]
Limit = Annotated[int, Field(ge=1, le=PAGE_MAX, description=f"page size, 1 to {PAGE_MAX}")]
Reason = Annotated[StrictStr, Field(max_length=1000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def do_not_call_key(text: str) -> str:
    """The key as jobs carry it: a RUT as '12345678-5', a phone in E.164; ValueError says why not."""
    text = text.strip()
    if text.startswith("+"):
        try:
            num = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            num = None
        if num is None or not phonenumbers.is_possible_number(num):
            raise ValueError(f"key {text!r} is not a phone number in E.164 form (+56987654321)")
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    readings = set()
    for parse in (parse_rut, lambda t: parse_phone(t, "CL").number):
        try:
            readings.add(parse(text))
        except ValueError:
            pass
    if not readings:
        raise ValueError(f"key must be a RUT (12345678-5) or a phone (+56987654321), got {text!r}")
    if len(readings) > 1:
        raise ValueError(f"key {text!r} reads as RUT and as phone ({' or '.join(sorted(readings))}); "
                         "write the RUT with its dash or the phone with its +56")
    return readings.pop()


# --- query parameters (lax: they arrive as text) --------------------------------------------------------


class PageQuery(Strict):
    limit: Limit = PAGE_DEFAULT
    cursor: Cursor | None = None


class AccountPageQuery(PageQuery):
    account_id: Id | None = Field(None, description="only this account (an account's key sees only its own)")


class BatchQuery(AccountPageQuery):
    status: BatchStatus | None = None


class JobQuery(AccountPageQuery):
    """Filters answered from an index: ``batch_id`` (with ``state``), ``rut``/``phone`` (the person key),
    ``updated_from_ms``/``updated_to_ms`` (integer wall-clock ms of the last write)."""

    batch_id: Id | None = None
    state: JobState | None = None
    rut: Annotated[str, Field(max_length=20)] | None = Field(None, description="national id, e.g. 12345678-5")
    phone: Annotated[str, Field(max_length=40)] | None = Field(None, description="E.164 or national form")
    outcome: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="outcome of the job's last attempt (exact); a page may then be short: follow "
                          "next_cursor until it is null")
    updated_from_ms: Annotated[int, Field(ge=0, le=2**53)] | None = None
    updated_to_ms: Annotated[int, Field(ge=0, le=2**53)] | None = None


# --- bodies -------------------------------------------------------------------------------------------


class TopUpRequest(Strict):
    cents: Annotated[StrictInt, Field(ge=0, le=MAX_TOPUP["cents"])] = 0
    minutes: Annotated[StrictInt, Field(ge=0, le=MAX_TOPUP["minutes"])] = 0


class CallerIdIn(Strict):
    number: Annotated[StrictStr, Field(min_length=1, max_length=20, description="E.164, e.g. +566001234567")]
    region: Annotated[StrictStr, Field(max_length=16, description='where it is local: "415", "RM"')] | None = None


MaxConcurrentCalls = Annotated[StrictInt, Field(ge=ACCOUNT_LIMITS["max_concurrent_calls"][0],
                                                le=ACCOUNT_LIMITS["max_concurrent_calls"][1])]
DailyCallLimit = Annotated[StrictInt, Field(ge=ACCOUNT_LIMITS["daily_call_limit"][0],
                                            le=ACCOUNT_LIMITS["daily_call_limit"][1],
                                            description="null: no daily limit")]


class AccountCreateRequest(Strict):
    """A new account (admin keys only); balances start at 0 (``POST /accounts/{id}/topup``)."""

    id: Annotated[StrictStr, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                                   description="the account's slug: letters, digits, _ . -")]
    name: Annotated[StrictStr, Field(max_length=200)] = ""
    plan: Plan = Field(Plan.UNLIMITED, description="unlimited, credits (cents) or minutes")
    max_concurrent_calls: MaxConcurrentCalls = 20
    daily_call_limit: DailyCallLimit | None = None


class AccountSettingsRequest(Strict):
    plan: Plan | None = Field(None, description="admin or billing keys only; a billing key may set only this")
    max_concurrent_calls: Annotated[StrictInt, Field(ge=ACCOUNT_LIMITS["max_concurrent_calls"][0],
                                                     le=ACCOUNT_LIMITS["max_concurrent_calls"][1])] | None = None
    daily_call_limit: Annotated[StrictInt, Field(ge=ACCOUNT_LIMITS["daily_call_limit"][0],
                                                 le=ACCOUNT_LIMITS["daily_call_limit"][1],
                                                 description="null: no daily limit")] | None = None
    # dialing controls (docs/dialing.md); bounds: speechai.dialing.limits, checked by the route
    caller_ids: list[CallerIdIn] | None = Field(None, description="the pool: [{number, region}]; [] or null: none")
    caller_id_daily_cap: StrictInt | None = Field(None, description="dials per number per local day; null: no cap")
    chile_rule_override: Reason | None = Field(None, description="why the account dials despite the Chile "
                                                                 "caller-ID rule (audited); empty or null clears")
    reserved_inbound_calls: StrictInt | None = Field(None, description="of max_concurrent_calls, kept for inbound")
    max_dials_per_second: StrictInt | None = Field(None, description="create-calls per second; null: no limit")
    predial_url: Annotated[StrictStr, Field(max_length=2000)] | None = Field(None, description="null: hook off")
    predial_timeout_s: StrictInt | float | None = None
    predial_on_error: Literal["skip", "call"] | None = None
    predial_skip_delay_min: StrictInt | None = None


class DoNotCallRequest(Strict):
    key: Annotated[StrictStr, Field(min_length=1, max_length=64, description="a RUT or a phone")]
    reason: Reason = ""

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("key must be a national id or an E.164 phone, got only spaces")
        return do_not_call_key(v)


class RetryRequest(Strict):
    reason: Annotated[StrictStr, Field(min_length=1, max_length=1000, description="why (kept in the history)")]
    force: StrictBool = Field(False, description="also a job that is done (succeeded): audited as forced")


class CancelRequest(Strict):
    reason: Reason = ""


class KeyCreateRequest(Strict):
    role: Role
    account_id: Id | None = Field(None, description="required for every role but admin; must exist")
    name: Annotated[StrictStr, Field(max_length=200)] = ""


class BatchCreateRequest(Strict):
    """A batch from JSON rows, loaded with the spreadsheet loader's own validation (same columns)."""

    account_id: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    batch_id: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    name: Annotated[StrictStr, Field(max_length=200)] = ""
    format: Literal["auto", "collection", "marketing", "generic", "reminder", "survey"] = "auto"
    agent_id: Annotated[StrictStr, Field(max_length=200)] | None = None
    from_number: Annotated[StrictStr, Field(max_length=40)] | None = None
    call_settings: dict[str, Any] = Field(default_factory=dict, description="CallSettings keys")
    accept_partial: StrictBool = False
    segments: list[dict[str, Any]] = Field(default_factory=list, max_length=50,
                                           description="segment rules, the default last (docs/segments.md)")
    rows: Annotated[list[dict[str, StrictStr | StrictInt | float | None]],
                    Field(min_length=1, max_length=MAX_JSON_ROWS,
                          description="one object per row: column header → cell")]


# --- answers ------------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]
    instance: str
    time: datetime


JobCounts = dict[str, int]


class BatchItem(BaseModel):
    id: str
    account_id: str | None
    name: str
    status: str | None
    priority: int | None
    jobs: JobCounts


class BatchPage(BaseModel):
    items: list[BatchItem]
    next_cursor: str | None


class BatchOut(BaseModel):
    id: str
    account_id: str
    name: str
    status: BatchStatus
    status_reason: str | None
    call_settings: CallSettings
    jobs: JobCounts


class BatchStatusOut(BaseModel):
    id: str
    status: BatchStatus


class SettingChange(BaseModel):
    before: Any
    after: Any


class BatchSettingsOut(BaseModel):
    id: str
    call_settings: CallSettings
    changes: dict[str, SettingChange]


class AttemptOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    attempt_id: str
    phone: str
    created_at: datetime
    placed: bool | None = None
    call_id: str | None = None
    call_status: str | None = None
    outcome: str | None = None
    duration_ms: int | None = None
    cost_cents: float | None = None
    local_zones: list[str] = Field(default_factory=list)  # the zones the window was checked in


class PhoneOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    number: str
    kind: str
    bad: bool
    attempts: int


class TransitionOut(BaseModel):
    at: datetime
    from_state: JobState | None
    to_state: JobState
    reason: str


class JobOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    account_id: str
    batch_id: str
    person_key: str
    name: str
    national_id: str | None
    phones: list[PhoneOut]
    state: JobState
    version: int
    next_try_at: datetime
    next_try_ms: int
    sync_ms: int
    attempts: list[AttemptOut]
    history: list[TransitionOut]
    last_reason: str | None
    created_at: datetime
    updated_at: datetime


class JobItem(BaseModel):
    id: str
    account_id: str
    batch_id: str
    person_key: str
    name: str
    state: JobState
    version: int
    next_try_ms: int
    sync_ms: int
    attempts: int
    outcome: str | None
    last_reason: str | None


class JobPage(BaseModel):
    items: list[JobItem]
    next_cursor: str | None


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    next_cursor: str | None


class JobActionOut(BaseModel):
    id: str
    state: JobState
    version: int
    status: Literal["done", "deferred"] = Field(description="deferred: in flight, cancelled once the live call ends")


class AccountOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # account fields added later are shown too

    id: str
    name: str
    plan: Plan
    balance_cents: int
    minutes_balance_ms: int
    reserved_cents: int
    reserved_ms: int
    spent_cents: int
    max_concurrent_calls: int
    daily_call_limit: int | None
    suspended_reason: str | None


class AccountSettingsOut(AccountOut):
    changes: dict[str, SettingChange]


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None


class DoNotCallItem(BaseModel):
    key: str
    reason: str
    added_at: datetime


class DoNotCallPage(BaseModel):
    items: list[DoNotCallItem]
    next_cursor: str | None


class DoNotCallOut(BaseModel):
    key: str
    status: Literal["added", "already listed"]


class KeyOut(BaseModel):
    id: str
    account_id: str | None
    role: Role
    name: str
    created_at: datetime
    created_by: str
    revoked: bool
    revoked_ms: int | None


class KeyCreated(KeyOut):
    token: str = Field(description="Authorization: Bearer <token>. Shown only in this answer; stored as a hash")


class KeyPage(BaseModel):
    items: list[KeyOut]
    next_cursor: str | None


class AuditOut(BaseModel):
    seq: int
    at: datetime
    key_id: str
    role: str
    account_id: str | None
    action: str
    method: str
    path: str
    target: str | None
    status: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


class LoadOut(BaseModel):
    """The loader's summary (the same as ``POST /batches/upload``)."""

    model_config = ConfigDict(extra="allow")

    batch_id: str
    ok: bool
    rows: int
    people: int
    jobs_created: int
    rejected_rows: int
    rejected: list[dict[str, Any]]


class WebhookAck(BaseModel):
    model_config = ConfigDict(extra="allow")
