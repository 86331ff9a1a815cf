"""Per-key token buckets, in memory (one instance's view: each instance limits what it serves)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

RATE_PER_S = 50.0  # sustained requests per second per key
BURST = 200  # requests a key may send at once after being idle
# Failed authentications per client address: a person mistyping a token never reaches this; a
# bad-token flood is answered 429 (with Retry-After) instead of 401.
AUTH_FAILURE_PER_S = 5.0
AUTH_FAILURE_BURST = 20
_MAX_KEYS = 10_000  # buckets kept; the oldest idle ones are dropped past it (a dropped bucket is full)


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``take(key)`` is 0.0 when the request may go ahead, else the seconds until one token is back.

    Time is the monotonic clock, not business time: a limit protects this process, not a campaign."""

    def __init__(self, rate_per_s: float = RATE_PER_S, burst: int = BURST,
                 now: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s > 0) or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s!r} and {burst!r}")
        self.rate, self.burst, self._now = rate_per_s, burst, now
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        now = self._now()
        bucket = self._buckets.pop(key, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[key] = bucket  # re-inserted last: dict order is least recently used first
        if len(self._buckets) > _MAX_KEYS:
            del self._buckets[next(iter(self._buckets))]
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate
