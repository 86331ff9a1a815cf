"""What happens to a simulated call: outcome names, their Retell semantics, and their draw.

Pure: a ``CallPlan`` is drawn from an outcome name and a seeded RNG; the simulator turns it into
call objects as business time passes. Statuses and reasons follow Retell's documented pairs
(``dial_*``, ``user_declined``, ``invalid_destination``, ``telephony_provider_*`` → ``not_connected``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

OUTCOMES: tuple[str, ...] = (
    "success",
    "answered",
    "no_answer",
    "busy",
    "declined",
    "voicemail",
    "invalid_number",
    "dial_failed",
    "provider_error",
    "long_call",
    "dnc_request",
    # facts about our caller id or route, not the person: the carrier flagged or blocked the from-number
    "marked_as_spam",
    "network_blocked",
)

# Outcomes about the caller id: scripted per from-number (RetellSimulator.flag_caller_id) or drawn.
CALLER_ID_OUTCOMES: tuple[str, ...] = ("marked_as_spam", "network_blocked")

# Outcomes that never connect: (disconnection_reason, ring seconds range). no_answer rings the full timeout.
_NOT_CONNECTED: dict[str, tuple[str, tuple[float, float]]] = {
    "no_answer": ("dial_no_answer", (0.0, 0.0)),
    "busy": ("dial_busy", (2.0, 5.0)),
    "declined": ("user_declined", (5.0, 15.0)),
    "invalid_number": ("invalid_destination", (0.5, 1.5)),
    "dial_failed": ("dial_failed", (1.0, 3.0)),
    "provider_error": ("telephony_provider_unavailable", (0.5, 2.0)),
    "marked_as_spam": ("marked_as_spam", (1.0, 3.0)),
    "network_blocked": ("network_blocked", (0.5, 2.0)),
}

# Connected outcomes: (disconnection_reason, talk seconds range); long_call talks until stopped or max.
_CONNECTED: dict[str, tuple[str, tuple[float, float]]] = {
    "success": ("agent_hangup", (60.0, 180.0)),
    "answered": ("user_hangup", (20.0, 120.0)),
    "voicemail": ("voicemail_reached", (12.0, 30.0)),
    "long_call": ("max_duration_reached", (0.0, 0.0)),
    # the person asks not to be called again; the agent ends the call
    "dnc_request": ("user_requested_dnc", (15.0, 60.0)),
}

DEFAULT_RING_TIMEOUT_S = 30.0
DEFAULT_MAX_DURATION_S = 3600.0  # Retell's default max_call_duration_ms is one hour

# Cents per second of conversation, split like Retell's product_costs.
PRODUCT_UNIT_PRICES: dict[str, float] = {
    "retell_platform": 0.1167,
    "llm_gpt_4o_mini": 0.0100,
    "retell_telephony": 0.0250,
}

DEFAULT_RATES: dict[str, float] = {
    "success": 0.25,
    "answered": 0.20,
    "no_answer": 0.25,
    "busy": 0.05,
    "declined": 0.05,
    "voicemail": 0.12,
    "invalid_number": 0.03,
    "dial_failed": 0.02,
    "provider_error": 0.03,
}


@dataclass(frozen=True)
class OutcomeRates:
    """Relative weights of outcomes for unscripted numbers (need not sum to 1)."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"unknown outcomes {sorted(unknown)}; known: {', '.join(OUTCOMES)}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("outcome weights must be >= 0 and not all zero")

    @classmethod
    def parse(cls, text: str) -> OutcomeRates:
        """``success=0.3,no_answer=0.4`` → rates with only those outcomes."""
        weights: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"expected outcome=weight, got {part!r}")
            weights[name.strip()] = float(value)
        return cls(weights)

    def draw(self, rng: random.Random) -> str:
        names = list(self.weights)
        return rng.choices(names, weights=[self.weights[n] for n in names], k=1)[0]


def check_outcome(name: str) -> str:
    if name not in OUTCOMES:
        raise ValueError(f"unknown outcome {name!r}; known: {', '.join(OUTCOMES)}")
    return name


@dataclass(frozen=True)
class CallPlan:
    """Everything decided at dial time. ``talk_s`` is business seconds from answer to hang-up."""

    outcome: str
    connected: bool
    ring_s: float
    talk_s: float
    disconnection_reason: str
    call_successful: bool
    in_voicemail: bool
    user_sentiment: str
    summary: str
    transcript: str
    collected: dict[str, str]


def plan_call(
    outcome: str,
    rng: random.Random,
    *,
    now: datetime,
    dynamic_variables: Mapping[str, str],
    ring_timeout_s: float = DEFAULT_RING_TIMEOUT_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    ring_s: float | None = None,
    talk_s: float | None = None,
) -> CallPlan:
    """``ring_s`` / ``talk_s`` fix the drawn durations (benchmarks: short or very long calls); the ring
    and max-duration limits still cap them, and ``no_answer`` always rings the full timeout."""
    check_outcome(outcome)
    name = dynamic_variables.get("nombre") or dynamic_variables.get("name") or "cliente"
    if outcome in _NOT_CONNECTED:
        reason, (lo, hi) = _NOT_CONNECTED[outcome]
        if outcome == "no_answer":
            ring = ring_timeout_s
        else:
            drawn = rng.uniform(lo, hi)  # drawn even when fixed: the seeded stream stays the same
            ring = min(drawn if ring_s is None else ring_s, ring_timeout_s)
        return CallPlan(
            outcome=outcome,
            connected=False,
            ring_s=ring,
            talk_s=0.0,
            disconnection_reason=reason,
            call_successful=False,
            in_voicemail=False,
            user_sentiment="Unknown",
            summary="The call did not connect.",
            transcript="",
            collected={},
        )
    reason, (lo, hi) = _CONNECTED[outcome]
    drawn_ring = rng.uniform(4.0, 15.0)  # drawn even when fixed: the seeded stream stays the same
    ring = min(drawn_ring if ring_s is None else ring_s, ring_timeout_s)
    talk = max_duration_s if outcome == "long_call" else rng.uniform(lo, hi)
    if talk_s is not None:
        talk = talk_s
        if outcome == "long_call" and talk < max_duration_s:
            reason = "user_hangup"  # a long call that ends on its own before the limit
    if talk >= max_duration_s:
        talk, reason = max_duration_s, "max_duration_reached"
    collected: dict[str, str] = {}
    if outcome == "success":
        amount = dynamic_variables.get("monto") or dynamic_variables.get("amount") or "150000"
        collected = {
            "promised_payment_date": (now + timedelta(days=rng.randint(1, 10))).date().isoformat(),
            "promised_amount": amount,
        }
        when = collected["promised_payment_date"]
        summary = f"{name} acknowledged the debt and promised to pay {amount} on {when}."
        transcript = (
            f"Agent: Hola, ¿hablo con {name}?\nUser: Sí, soy yo.\n"
            f"Agent: Le llamamos por su deuda pendiente de {amount}. ¿Cuándo podría pagar?\n"
            f"User: Puedo pagar el {when}.\nAgent: Perfecto, muchas gracias.\n"
        )
        sentiment, successful, voicemail = "Positive", True, False
    elif outcome == "voicemail":
        summary = "The call reached a voicemail box."
        transcript = "Agent: Hola, le llamamos por un asunto importante, por favor devuélvanos la llamada.\n"
        sentiment, successful, voicemail = "Unknown", False, True
    else:
        summary = f"{name} answered but did not commit to a payment."
        transcript = (
            f"Agent: Hola, ¿hablo con {name}?\nUser: Sí, pero ahora no puedo hablar.\nAgent: Entiendo.\n"
        )
        sentiment, successful, voicemail = "Neutral", False, False
    return CallPlan(
        outcome=outcome,
        connected=True,
        ring_s=ring,
        talk_s=talk,
        disconnection_reason=reason,
        call_successful=successful,
        in_voicemail=voicemail,
        user_sentiment=sentiment,
        summary=summary,
        transcript=transcript,
        collected=collected,
    )


def parse_talk_seconds(text: str) -> dict[str, float]:
    """``success=2,long_call=86400`` → fixed talk seconds per connected outcome."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"expected outcome=seconds, got {part!r}")
        if name not in _CONNECTED:
            raise ValueError(f"talk time applies to connected outcomes ({', '.join(_CONNECTED)}), got {name!r}")
        seconds = float(value)
        if not seconds >= 0:
            raise ValueError(f"talk seconds of {name} must be >= 0, got {value.strip()!r}")
        out[name] = seconds
    return out


def call_cost(duration_s: float) -> dict[str, Any]:
    """Retell-shaped ``call_cost``; all money in cents."""
    products = [
        {"product": product, "unit_price": price, "cost": round(price * duration_s, 4)}
        for product, price in PRODUCT_UNIT_PRICES.items()
    ]
    return {
        "product_costs": products,
        "combined_cost": round(sum(p["cost"] for p in products), 4),
        "total_duration_seconds": round(duration_s, 3),
        "total_duration_unit_price": round(sum(PRODUCT_UNIT_PRICES.values()), 4),
    }
