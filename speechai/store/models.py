"""Beanie documents. Jobs are checkpointed whole (see ``store.checkpoint``); never ``$set`` a datetime.

Indexes are declared for every query the runtime makes; the query that uses each is named beside it.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime, time
from enum import StrEnum
from typing import Any

import pymongo
from beanie import Document
from pydantic import BaseModel, Field, field_validator, model_validator
from pymongo import IndexModel

from speechai.domain.events import OutboxItem
from speechai.domain.segments import SegmentRule
from speechai.domain.settings import CallSettings

# Documents per bulk write of a batcher: a bulk is encoded in one go on the event loop, and 1,000 job
# documents at once stalled it for over 100 ms with 5,000 calls in flight.
BULK_MAX = 100


class JobState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    RETRY = "retry_scheduled"
    DONE = "done"
    FAILED = "failed"
    EXCLUDED = "excluded"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"


DUE_STATES = (JobState.PENDING, JobState.RETRY)
# Suspended jobs are claimable too: the scheduler skips suspended accounts, so they resume on top-up.
CLAIMABLE_STATES = (*DUE_STATES, JobState.SUSPENDED)
FINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.EXCLUDED, JobState.CANCELLED)


class BatchStatus(StrEnum):
    LOADING = "loading"  # jobs being written; invisible to the scheduler until flipped to active
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class Plan(StrEnum):
    UNLIMITED = "unlimited"
    MINUTES = "minutes"
    CREDITS = "credits"


class CallerId(BaseModel):
    """A from-number of a caller-ID pool; ``region`` tags where it is local (a US area code such as "415",
    a Chile region such as "RM" or "V"); without one, a US number is local to its own area code."""

    number: str  # E.164
    region: str | None = None


class AgentArm(BaseModel):
    """One arm of an A/B split: an agent id and its relative weight."""

    agent_id: str
    weight: float = 1.0


# ISO 4217 alphabetic codes in use (2025), funds and metals included: what an account's currency may be.
ISO_4217 = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE
CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ
GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG
QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU
XTS XUA XXX YER ZAR ZMW ZWG ZWL
""".split())


def currency_code(value: str) -> str:
    """An ISO 4217 code ("usd" → "USD"); ValueError naming the value otherwise."""
    code = value.strip().upper() if isinstance(value, str) else value
    if code not in ISO_4217:
        raise ValueError(f"currency must be an ISO 4217 code such as USD or CLP, got {str(value)[:20]!r}")
    return code


class Account(Document):
    """``id`` is the account's slug. Money in integer cents; balances change only by guarded ``$inc``.

    ``currency`` names the unit of the account's money figures (balance, cost): the provider's cost is
    charged as it comes, never converted, so it is the currency the provider bills this account's calls in."""

    id: str  # type: ignore[assignment]
    name: str = ""
    plan: Plan = Plan.UNLIMITED
    balance_cents: int = 0
    minutes_balance_ms: int = 0
    reserved_cents: int = 0
    reserved_ms: int = 0
    spent_cents: int = 0
    max_concurrent_calls: int = 20
    daily_call_limit: int | None = None
    suspended_reason: str | None = None
    currency: str = "USD"  # ISO 4217; reports show cost in it
    # --- dialing controls (docs/dialing.md) ---
    caller_ids: list[CallerId] = Field(default_factory=list)  # the pool, unless a batch has its own
    caller_id_daily_cap: int | None = None  # dials per from-number per local day
    # Dial despite a Chile caller-ID violation: the reason text is the audit trail, logged at every start.
    chile_rule_override: str | None = None
    reserved_inbound_calls: int = 0  # of max_concurrent_calls, never used by outbound
    max_dials_per_second: int | None = None  # create-calls per second across instances
    predial_url: str | None = None  # pre-dial eligibility hook; None = off
    predial_timeout_s: float = 2.0
    predial_on_error: str = "skip"  # "skip" (fail closed: retry later) or "call"
    predial_secret_env: str = "SPEECHAI_PREDIAL_SECRET"  # environment variable holding the signing secret
    predial_skip_delay_min: int = 60
    # events written with the change that caused them (account.suspended), relayed to the outbox
    outbox: list[OutboxItem] = Field(default_factory=list)

    @field_validator("currency", mode="before")
    @classmethod
    def _iso_currency(cls, value: Any) -> str:
        return currency_code(value)

    class Settings:
        name = "accounts"


class Batch(Document):
    id: str  # type: ignore[assignment]
    account_id: str
    name: str = ""
    status: BatchStatus = BatchStatus.ACTIVE
    call_settings: CallSettings = CallSettings()
    agent_id: str | None = None
    from_number: str | None = None
    source_file: str | None = None
    created_at: datetime
    status_reason: str | None = None
    # why the batch's waiting jobs are not being dialed right now (window closed, paused, suspended);
    # kept here, not on every job, so the scheduler never writes to a whole batch of jobs
    waiting_reason: str | None = None
    # --- dialing controls (docs/dialing.md) ---
    caller_ids: list[CallerId] = Field(default_factory=list)  # overrides the account's pool
    caller_id_daily_cap: int | None = None
    # collection | reminder | survey (existing customers: Chile +56 600) or marketing (+56 809); None = unchecked
    use_case: str | None = None
    agent_split: list[AgentArm] = Field(default_factory=list)  # 2-4 arms; overrides agent_id
    segments: list[SegmentRule] = Field(default_factory=list)  # ordered, default last (docs/segments.md)
    # events written with the change that caused them (batch.paused, batch.finished), relayed to the outbox
    outbox: list[OutboxItem] = Field(default_factory=list)
    finished_ms: int = 0  # when every job was final (batch.finished sent); 0 while not

    class Settings:
        name = "batches"
        # BSON has no time-of-day type: allowed hours and waves are stored as "HH:MM:SS" text.
        bson_encoders = {time: lambda t: t.isoformat()}
        indexes = [IndexModel([("status", pymongo.ASCENDING)])]  # scheduler: active batches


class Phone(BaseModel):
    number: str  # E.164
    kind: str = "mobile"
    bad: bool = False
    bad_reason: str | None = None
    attempts: int = 0
    zones: list[str] = Field(default_factory=list)  # possible IANA zones of the number; empty: unknown


class Attempt(BaseModel):
    """One dial. Written (checkpointed) before create-call; ``call_id`` saved the moment it returns."""

    attempt_id: str
    phone: str
    created_at: datetime
    local_zones: list[str] = Field(default_factory=list)  # the zones the window was checked in
    # None = not yet known whether the provider placed it; False = not placed (does not count).
    placed: bool | None = None
    counted: bool = False
    call_id: str | None = None
    # when create-call answered: the provider dialed no later than this (contact caps count from it)
    placed_at: datetime | None = None
    call_status: str | None = None
    disconnection_reason: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    cost_cents: float | None = None
    outcome: str | None = None
    success: bool | None = None
    summary: str | None = None
    sentiment: str | None = None
    in_voicemail: bool | None = None
    collected: dict[str, Any] = Field(default_factory=dict)
    recording_url: str | None = None
    public_log_url: str | None = None
    error: str | None = None
    # credit held for this attempt until it is settled with the real cost (or released)
    reserved_cents: int = 0
    reserved_ms: int = 0
    settled: bool = True
    daily_keys: list[str] = Field(default_factory=list)  # daily counters this attempt consumed
    from_number: str | None = None  # the caller id this attempt dials from
    agent_id: str | None = None  # the agent it was sent to (the A/B arm, the batch's or the default)


class Lease(BaseModel):
    owner: str
    until_ms: int  # wall-clock epoch ms: an integer, so heartbeats can $set it safely
    gen: int = 0  # the owner's generation: a restarted instance re-adopts its own jobs, fencing the old process
    claim: str = ""  # token of the bulk claim that took the job, to read back exactly what was won


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def wall_ms() -> int:
    """Wall-clock epoch ms for change tracking between instances (not business time)."""
    return int(_time.time() * 1000)


class Transition(BaseModel):
    at: datetime
    from_state: JobState | None
    to_state: JobState
    reason: str


class Job(Document):
    account_id: str
    batch_id: str
    dedup_key: str
    person_key: str
    name: str = ""
    national_id: str | None = None
    phones: list[Phone] = Field(default_factory=list)
    phone_index: int = 0
    variables: dict[str, str] = Field(default_factory=dict)
    state: JobState = JobState.PENDING
    version: int = 0
    # random token of the last checkpoint: tells whether a write whose reply was lost was applied
    ckpt: str = ""
    next_try_at: datetime
    # next_try_at as epoch ms: the embedded server answers integer ranges and sorts from an index only
    next_try_ms: int = 0
    # wall-clock ms of the last write: other instances resync their due index from it
    sync_ms: int = Field(default_factory=wall_ms)
    attempts: list[Attempt] = Field(default_factory=list)
    attempts_counted: int = 0
    lease: Lease | None = None
    history: list[Transition] = Field(default_factory=list)
    last_reason: str | None = None
    load_id: str | None = None  # set while the loader that wrote it has not committed
    arm: str | None = None  # A/B split: the agent id this person is assigned to
    segment: str | None = None  # the segment rule this person matched (docs/segments.md)
    priority: int = 0  # the segment's priority: higher first within the batch's due jobs
    # the last pre-dial eligibility answer: "call", "skip", "exclude" (or the error policy's), and why
    predial_action: str | None = None
    predial_reason: str | None = None
    # the events of this job's latest checkpoint that caused any: relayed to the outbox right after it,
    # and again by whoever finds them unrelayed (a restarted actor, the outbox sweep)
    outbox: list[OutboxItem] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    class Settings:
        name = "jobs"
        indexes = [
            IndexModel([("dedup_key", pymongo.ASCENDING)], unique=True),  # loader idempotency
            # scheduler: a batch's waiting jobs, loaded into the due index when the batch appears
            IndexModel([("batch_id", pymongo.ASCENDING), ("state", pymongo.ASCENDING)]),
            IndexModel([("state", pymongo.ASCENDING), ("next_try_ms", pymongo.ASCENDING)]),  # due index load
            IndexModel([("sync_ms", pymongo.ASCENDING)]),  # due index resync: jobs written since
            IndexModel([("lease.owner", pymongo.ASCENDING), ("state", pymongo.ASCENDING)]),  # re-adoption
            IndexModel([("lease.until_ms", pymongo.ASCENDING)]),  # expired-lease takeover
            IndexModel([("lease.claim", pymongo.ASCENDING)]),  # read back a bulk claim
            # caps: a person's jobs. Single-field: the embedded server uses a compound index only when
            # every one of its fields is matched (measured with explain(), tests/test_query_plans.py)
            IndexModel([("person_key", pymongo.ASCENDING)]),
        ]

    @model_validator(mode="after")
    def _derived_times(self) -> Job:
        self.next_try_ms = epoch_ms(self.next_try_at)
        return self

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


class CallRecord(Document):
    """The provider's full call payload, latest version, one per Retell ``call_id``."""

    call_id: str
    job_id: str
    attempt_id: str
    batch_id: str
    account_id: str
    call_status: str | None = None
    payload: dict[str, Any]
    updated_at: datetime

    class Settings:
        name = "calls"
        indexes = [
            IndexModel([("call_id", pymongo.ASCENDING)], unique=True),
            IndexModel([("job_id", pymongo.ASCENDING)]),
            IndexModel([("batch_id", pymongo.ASCENDING)]),
        ]


def dnc_id(account_id: str, key: str) -> str:
    return f"{account_id}:{key}"


class DoNotCall(Document):
    """Account-level do-not-call entry, keyed by national id or E.164 phone.

    ``id`` is "<account>:<key>": the dial-time check is an ``_id $in`` lookup, the one multi-value
    query the embedded server answers from an index (DESIGN.md section 6)."""

    id: str = ""  # type: ignore[assignment]
    account_id: str
    key: str
    reason: str = ""
    added_at: datetime

    @model_validator(mode="after")
    def _keyed_id(self) -> DoNotCall:
        if not self.id:
            self.id = dnc_id(self.account_id, self.key)
        return self

    class Settings:
        name = "do_not_call"
        indexes = [IndexModel([("account_id", pymongo.ASCENDING), ("key", pymongo.ASCENDING)], unique=True)]


class WebhookEvent(Document):
    """Every accepted provider webhook; the unique key (event:call_id) drops Retell's retries."""

    key: str
    event: str
    call_id: str
    payload: dict[str, Any]
    received_at: datetime

    class Settings:
        name = "webhook_events"
        indexes = [IndexModel([("key", pymongo.ASCENDING)], unique=True)]


class DailyCounter(Document):
    """Dials (or people) counted against a daily limit; ``id`` is "<scope>:<local date>"."""

    id: str  # type: ignore[assignment]
    n: int = 0

    class Settings:
        name = "daily_counters"


class QuotaGrant(BaseModel):
    owner: str
    n: int
    want: int = 0
    until_ms: int


class Quota(Document):
    """A provider concurrency limit shared by instances (``id``: "account:<id>"), held as leased blocks
    (see ``store.quotas``); changed only by a replace conditional on ``version``."""

    id: str  # type: ignore[assignment]
    version: int = 0
    grants: list[QuotaGrant] = Field(default_factory=list)

    class Settings:
        name = "quotas"


class CallerIdRest(Document):
    """A from-number rested for the rest of a local day (``id``: "<account>:<number>:<day>") because the
    carrier marked it as spam or blocked it."""

    id: str  # type: ignore[assignment]
    account_id: str
    number: str
    day: str
    reason: str
    refusals: int = 1  # calls refused while it rested (a late call of the same day adds one)

    class Settings:
        name = "caller_id_rests"


class DialRate(Document):
    """Create-calls of an account in one second, shared by instances: a ring of slots
    (``id``: "<account>:<second mod RING>") reused as seconds pass, so the collection never grows."""

    id: str  # type: ignore[assignment]
    sec: int = 0  # epoch second this slot counts
    n: int = 0

    class Settings:
        name = "dial_rate"


class InstanceRecord(Document):
    """An instance id's generation, bumped at every start: fences an older process of the same id.

    The heartbeat of the current generation also writes what ``speechai status`` shows: when it last beat,
    its lease TTL (an instance is stale once its beat is older than two of them), the scheduler's last
    fill pass, calls in flight and where it runs. Times are integer wall-clock epoch ms (never $set a
    datetime); ``stopped_ms`` is set when the instance stopped cleanly."""

    id: str  # type: ignore[assignment]
    generation: int = 0
    heartbeat_ms: int | None = None
    lease_ttl_ms: int | None = None
    last_pass_ms: int | None = None
    in_flight: int = 0
    pid: int | None = None
    host: str = ""
    started_ms: int | None = None
    stopped_ms: int | None = None

    class Settings:
        name = "instances"


from speechai.store.agent_models import AgentKey, AgentUser, HumanCall  # noqa: E402  (human agents)
from speechai.store.api_models import ApiKey, AuditEntry  # noqa: E402  (the control API's documents)
from speechai.store.outbox_models import INTEGRATION_MODELS  # noqa: E402  (outbox, webhooks, CRM)

DOCUMENT_MODELS: list[type[Document]] = [Account, Batch, Job, CallRecord, DoNotCall, WebhookEvent, Quota,
                                          InstanceRecord, DailyCounter, ApiKey, AuditEntry, CallerIdRest,
                                          DialRate, AgentUser, AgentKey, HumanCall, *INTEGRATION_MODELS]
