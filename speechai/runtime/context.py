"""What every actor of one runtime instance shares: clocks, provider client, identity, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from actors.clock import Clock, RealClock
from actors.mailbox import ActorRef
from speechai.retell.client import RetellClient


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

    def lease_until_ms(self) -> int:
        return self.now_ms() + int(self.limits.lease_ttl_s * 1000)

    def now_ms(self) -> int:
        return int(self.wall.now().timestamp() * 1000)
