"""Per-user figures of human agents' calls, from what the server recorded (pure, exact arithmetic).

Definitions (docs/agents.md):

- ``calls``: ended calls (a call still in progress is counted apart, in ``in_progress``);
- ``successes``: calls ended ``completed`` (a conversation happened); ``failures``: every other ended call;
- ``total_talk_ms``: the summed duration of the completed calls;
- ``aht_ms`` (average handle time): ``total_talk_ms / successes``, rounded half-up to a whole millisecond
  (computed as a fraction first, so no float error creeps in); None without a completed call;
- ``success_rate``: ``successes / calls`` as a fraction, shown rounded to 4 decimals; None without calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

COMPLETED = "completed"
IN_PROGRESS = "in_progress"


@dataclass
class Tally:
    """Counts and summed durations per status of one user's calls."""

    calls: dict[str, int] = field(default_factory=dict)
    duration_ms: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, duration_ms: int | None, n: int = 1) -> None:
        if n < 0 or (duration_ms is not None and duration_ms < 0):
            raise ValueError(f"a tally takes no negative count or duration, got n={n}, duration_ms={duration_ms}")
        self.calls[status] = self.calls.get(status, 0) + n
        self.duration_ms[status] = self.duration_ms.get(status, 0) + (duration_ms or 0)


@dataclass(frozen=True)
class UserMetrics:
    user_id: str
    calls: int
    in_progress: int
    successes: int
    failures: int
    total_talk_ms: int
    aht: Fraction | None
    success: Fraction | None

    @property
    def aht_ms(self) -> int | None:
        return None if self.aht is None else round_half_up(self.aht)

    @property
    def success_rate(self) -> float | None:
        return None if self.success is None else float(round(self.success, 4))

    def as_json(self) -> dict[str, object]:
        return {"user_id": self.user_id, "calls": self.calls, "in_progress": self.in_progress,
                "successes": self.successes, "failures": self.failures, "total_talk_ms": self.total_talk_ms,
                "aht_ms": self.aht_ms, "success_rate": self.success_rate}


def round_half_up(value: Fraction) -> int:
    """Nearest integer, halves away from zero (durations are never negative)."""
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)


def metrics_of(user_id: str, tally: Tally) -> UserMetrics:
    in_progress = tally.calls.get(IN_PROGRESS, 0)
    calls = sum(n for s, n in tally.calls.items() if s != IN_PROGRESS)
    successes = tally.calls.get(COMPLETED, 0)
    talk = tally.duration_ms.get(COMPLETED, 0)
    return UserMetrics(user_id=user_id, calls=calls, in_progress=in_progress, successes=successes,
                       failures=calls - successes, total_talk_ms=talk,
                       aht=Fraction(talk, successes) if successes else None,
                       success=Fraction(successes, calls) if calls else None)


def tally_calls(calls: Iterable[tuple[str, str, int | None]]) -> dict[str, Tally]:
    """Tallies per user from (user_id, status, duration_ms) facts."""
    out: dict[str, Tally] = {}
    for user_id, status, duration_ms in calls:
        out.setdefault(user_id, Tally()).add(status, duration_ms)
    return out


def metrics_by_user(tallies: Mapping[str, Tally]) -> list[UserMetrics]:
    return [metrics_of(user_id, tallies[user_id]) for user_id in sorted(tallies)]


def totals(tallies: Mapping[str, Tally]) -> UserMetrics:
    """The same figures over every user given (a team, an account)."""
    merged = Tally()
    for tally in tallies.values():
        for status, n in tally.calls.items():
            merged.add(status, tally.duration_ms.get(status, 0), n)
    return metrics_of("*", merged)
