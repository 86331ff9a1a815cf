"""What every actor of one runtime instance shares: clocks, provider client, identity, limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from actors.clock import Clock, RealClock
from actors.mailbox import ActorRef
from actors.right_of_way import RightOfWay
from speechai.integrations.outbox import Outbox
from speechai.retell.client import RetellClient
from speechai.runtime.doc_cache import DocCache
from speechai.runtime.quota_keeper import QuotaKeeper
from speechai.store.models import Account, Batch, epoch_ms

GIVE_WAY_MAX_S = 0.25  # real seconds: how long work off the dial path waits at most for dials


@dataclass
class RuntimeLimits:
    concurrency: int = 20
    poll_interval_s: float = 10.0
    scheduler_interval_s: float = 60.0
    lease_ttl_s: float = 30.0
    skip_idle: bool = False
    cents_per_minute: int = 12
    # Retell honours an idempotency key for one hour; re-send only well inside that.
    idempotency_window_s: float = 50 * 60
    create_retries: int = 4
    analysis_wait_s: float = 300.0  # how long to wait for call_analysis after a call ended
    stop_grace_s: float = 30.0  # past max_call_duration before we stop the call ourselves
    # Webhooks count as arriving while one came within this many real seconds; a live call is then
    # polled rarely (with back-off up to ``webhook_poll_max_s`` business seconds) instead of every
    # ``poll_interval_s``.
    webhook_silence_s: float = 60.0
    webhook_poll_max_s: float = 300.0
    resync_interval_s: float = 2.0  # real seconds between due-index resyncs with the database
    cache_ttl_s: float = 2.0  # real seconds a cached batch/account document is trusted (one resync)
    # Jobs claimed and checked ahead while every line is busy, so a freed line is taken at once.
    ready_ahead: int = 16


@dataclass
class Runtime:
    clock: Clock
    retell: RetellClient
    instance_id: str
    agent_id: str | None
    from_number: str
    limits: RuntimeLimits = field(default_factory=RuntimeLimits)
    wall: Clock = field(default_factory=RealClock)
    log: Any = field(default_factory=lambda: structlog.get_logger("speechai"))
    # job id -> mailbox of the call actor that holds it (webhooks are routed through this)
    actors: dict[str, ActorRef[Any]] = field(default_factory=dict)
    done: anyio.Event | None = None
    generation: int = 0
    quotas: QuotaKeeper = field(init=False)
    batches: DocCache[Batch] = field(init=False)
    accounts: DocCache[Account] = field(init=False)
    outbox: Outbox = field(init=False)
    last_webhook_wall: float | None = None  # wall-clock seconds of the last verified webhook
    # set by the scheduler: send the call actors waiting for a line (of one account, or all) to look again
    recall_waiting: Callable[[str | None], None] | None = None
    view_epoch: int = 0  # bumped by every change this instance makes to a batch or account
    # Held by each call actor that has a line and has still to dial: database work that is not on the
    # way to a dial gives way to it (the embedded server runs one command at a time).
    dialing: RightOfWay = field(default_factory=RightOfWay)

    def __post_init__(self) -> None:
        self.quotas = QuotaKeeper(self.instance_id, self.lease_until_ms, self.now_ms)
        self.batches = DocCache(Batch, self.limits.cache_ttl_s)
        self.accounts = DocCache(Account, self.limits.cache_ttl_s)
        self.outbox = Outbox(lambda: epoch_ms(self.clock.now()))

    async def give_way(self) -> None:
        """Before database work that is not on the way to a dial."""
        await self.dialing.give_way(GIVE_WAY_MAX_S)

    def webhooks_arriving(self) -> bool:
        last = self.last_webhook_wall
        return last is not None and self.wall.now().timestamp() - last < self.limits.webhook_silence_s

    def note_webhook(self) -> None:
        self.last_webhook_wall = self.wall.now().timestamp()

    def forget_cached(self) -> None:
        """A batch or account changed (an operator, a suspension): the next decision reads it fresh."""
        self.view_epoch += 1
        self.batches.forget()
        self.accounts.forget()

    def lease_until_ms(self) -> int:
        return self.now_ms() + int(self.limits.lease_ttl_s * 1000)

    def now_ms(self) -> int:
        return int(self.wall.now().timestamp() * 1000)
