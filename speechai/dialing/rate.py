"""Dial-rate limit: at most ``max_dials_per_second`` create-calls per account per second, across every
instance on the database (providers limit calls started per second separately from concurrency).

A token bucket refilled every second, shared through a ring of per-second counter documents
(``"<account>:<second mod RING>"``): a token is one guarded ``$inc`` on the current second's slot, a slot
left from an older second is taken over by a guarded ``$set`` of integers. Seconds are business time
(the injected clock), the time the provider sees. This instance remembers a full second locally, so a
waiting dial costs no database round trip until the next second begins. Tokens are handed out only in
the first ``1 - guard_s`` of a second: a create-call takes a moment to reach the provider, and one sent
in a second's last instant would arrive in the next one and exceed its limit there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import anyio
from pymongo.errors import DuplicateKeyError

from speechai.store.models import DialRate

RING = 64
GUARD_S = 0.3  # the end of each second in which no token is handed out (for the create-call's transit)


async def take_token(account_id: str, second: int, limit: int) -> bool:
    """One of ``limit`` dials of ``second`` for the account; False when that second is spent."""
    coll = DialRate.get_pymongo_collection()
    slot = f"{account_id}:{second % RING}"
    if (await coll.update_one({"_id": slot, "sec": second, "n": {"$lt": limit}}, {"$inc": {"n": 1}})).modified_count:
        return True
    if (await coll.update_one({"_id": slot, "sec": {"$lt": second}}, {"$set": {"sec": second, "n": 1}})
            ).modified_count:
        return True
    try:
        await coll.insert_one({"_id": slot, "sec": second, "n": 1})
        return True
    except DuplicateKeyError:  # another instance opened this second meanwhile
        return (await coll.update_one({"_id": slot, "sec": second, "n": {"$lt": limit}},
                                      {"$inc": {"n": 1}})).modified_count == 1


@dataclass
class DialRateLimiter:
    """This instance's side: waits (business time) until the account may dial, then holds a token."""

    now: Callable[[], datetime]
    real_seconds: Callable[[float], float]  # business seconds → real seconds to sleep
    guard_s: float = GUARD_S
    _full: dict[str, int] = field(default_factory=dict)  # account → last second seen spent

    def _open(self, second: int) -> bool:
        return self.now().timestamp() < second + 1 - self.guard_s

    async def acquire(self, account_id: str, limit: int) -> None:
        while True:
            now = self.now().timestamp()
            second = math.floor(now)
            if self._open(second) and self._full.get(account_id) != second \
                    and await take_token(account_id, second, limit):
                if self._open(second):
                    return
                continue  # the second (its open part) ended while the token was taken: wait for the next
            if self._open(second):
                self._full[account_id] = second
            await anyio.sleep(max(0.001, self.real_seconds(second + 1 - now)))


def outbound_limit(max_concurrent_calls: int, reserved_inbound_calls: int) -> int:
    """Slots outbound may use: the account's provider concurrency less those kept for inbound calls
    (debtors calling back). Never negative; a reservation of the whole concurrency stops outbound."""
    return max(0, max_concurrent_calls - max(0, reserved_inbound_calls))
