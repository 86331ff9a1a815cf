"""Account plans: what to reserve before a dial and how to settle it after (pure arithmetic).

Reservation model: reserving moves the amount from the balance to ``reserved_*`` (one guarded ``$inc``
that fails when the balance is short, so two instances cannot overspend); settling releases the
reservation (``reserved_* -= reserved``) and adds the returned delta to the balance, i.e. refunds
what was reserved but not used. A failed dial settles with zero cost and gets it all back.
"""

from __future__ import annotations

import math

from speechai.domain.settings import CallSettings

PLANS = ("unlimited", "minutes", "credits")


def estimate_reservation(plan: str, settings: CallSettings, *, cents_per_minute: int) -> tuple[int, int]:
    """(cents, ms) to reserve before a dial: the worst case, a call lasting ``max_call_duration_s``."""
    _check(plan)
    if cents_per_minute < 0:
        raise ValueError(f"cents_per_minute must be >= 0, got {cents_per_minute}")
    max_ms = settings.max_call_duration_s * 1000
    if plan == "minutes":
        return 0, max_ms
    if plan == "credits":
        return math.ceil(settings.max_call_duration_s * cents_per_minute / 60), 0
    return 0, 0


def settle(plan: str, *, reserved_cents: int, reserved_ms: int, cost_cents: float, duration_ms: int
           ) -> tuple[int, int]:
    """(delta_balance_cents, delta_balance_ms) applied together with releasing the reservation.

    Cost is the provider's ``combined_cost`` in cents, charged rounded up to a whole cent; duration is
    the provider's ``duration_ms``. A call that cost more than reserved yields a negative delta.
    """
    _check(plan)
    if cost_cents < 0 or duration_ms < 0 or reserved_cents < 0 or reserved_ms < 0:
        raise ValueError(f"negative amounts: cost_cents={cost_cents}, duration_ms={duration_ms}, "
                         f"reserved_cents={reserved_cents}, reserved_ms={reserved_ms}")
    if plan == "credits":
        return reserved_cents - math.ceil(round(cost_cents, 6)), reserved_ms
    if plan == "minutes":
        return reserved_cents, reserved_ms - duration_ms
    return reserved_cents, reserved_ms


def _check(plan: str) -> None:
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
