"""When an outbound webhook delivery is tried again, given up, and its subscription disabled."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Seconds after each failed try (then the last one, repeated): about 26 h of tries in all.
SCHEDULE_S = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 21600, 28800)
JITTER = 0.2  # ± this fraction, so receivers coming back are not hit by every retry at once


@dataclass(frozen=True)
class RetryRules:
    retry_for_s: float = 26 * 3600  # give a delivery up only after failing this long
    disable_after_failures: int = 20  # consecutive failed tries of a subscription (any delivery) ...
    disable_after_s: float = 24 * 3600  # ... with no success for this long: disable it


def retry_delay_s(tries: int, rng: random.Random) -> float:
    """Delay after the ``tries``-th failed try (1-based), jittered."""
    base = SCHEDULE_S[min(max(tries, 1), len(SCHEDULE_S)) - 1]
    return base * (1 + rng.uniform(-JITTER, JITTER))


def gives_up(first_try_ms: int, now_ms: int, rules: RetryRules) -> bool:
    return now_ms - first_try_ms >= rules.retry_for_s * 1000


def should_disable(failures_in_row: int, last_success_ms: int, created_ms: int, now_ms: int,
                   rules: RetryRules) -> bool:
    """Sustained failure: many failures in a row and nothing delivered for a day."""
    since = max(last_success_ms, created_ms)
    return failures_in_row >= rules.disable_after_failures and now_ms - since >= rules.disable_after_s * 1000


def succeeded(status: int) -> bool:
    return 200 <= status < 300
