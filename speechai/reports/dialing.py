"""Report sections of the dialing controls (docs/dialing.md), fed by the report's one pass over the jobs:

- ``caller_ids``: per from-number, calls, answered calls and the answer rate (answered: the call connected,
  a conversation or a voicemail), and the local days it was rested (the carrier marked it as spam or
  blocked it) with the last reason;
- ``ab_arms``: per A/B arm of a batch with an ``agent_split``, people, placed attempts, contacts (people
  reached in a conversation), successes (people), promises (people who promised to pay), cost and cost per
  success, and against the batch's first arm the difference in success rate with its 95 % confidence
  interval and the verdict of ``speechai.dialing.ab.compare`` ("not significant yet" below the minimum).

Counting follows ``speechai.reports.data``: calls are placed attempts, attempts count by their local day
within the report's dates; people count once per arm whatever the dates.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, tzinfo
from decimal import Decimal
from typing import Any

from speechai.dialing.ab import ArmStats, compare
from speechai.reports import data as d
from speechai.store.models import CallerIdRest

ANSWERED = ("conversation", "voicemail")
DEFAULT_NUMBER = "(configured default)"


@dataclass
class _Number:
    calls: int = 0
    answered: int = 0
    contacts: int = 0
    batches: set[str] = field(default_factory=set)


@dataclass
class _Arm:
    people: int = 0
    attempts: int = 0
    contacts: int = 0
    successes: int = 0
    promises: int = 0
    cost: Decimal = field(default_factory=Decimal)


@dataclass
class DialingTally:
    """What the dialing sections need, accumulated job by job during the report's pass."""

    numbers: dict[tuple[str, str], _Number] = field(default_factory=lambda: defaultdict(_Number))
    arms: dict[str, dict[str, _Arm]] = field(default_factory=dict)  # batch -> agent id -> tally
    weights: dict[str, dict[str, float]] = field(default_factory=dict)

    def job(self, batch: dict[str, Any], tz: tzinfo, raw: dict[str, Any], in_range: list[dict[str, Any]]) -> None:
        """One job (a projection with ``arm`` and ``variables``) of ``batch`` (with ``agent_split`` and
        ``from_number``); ``in_range``: its attempts within the report's dates."""
        batch_id, account = batch["_id"], batch.get("account_id") or ""
        own = batch.get("from_number") or DEFAULT_NUMBER
        placed = [a for a in in_range if a.get("placed") is True]
        for attempt in placed:
            slot = self.numbers[(account, attempt.get("from_number") or own)]
            slot.calls += 1
            slot.answered += attempt.get("outcome") in ANSWERED
            slot.contacts += attempt.get("outcome") == "conversation"
            slot.batches.add(batch_id)
        split = batch.get("agent_split") or []
        if not split:
            return
        arms = self.arms.setdefault(batch_id, {a["agent_id"]: _Arm() for a in split})
        self.weights.setdefault(batch_id, {a["agent_id"]: float(a.get("weight", 1.0)) for a in split})
        arm = arms.get(raw.get("arm") or "")
        if arm is None:
            return  # not assigned yet (never dialed) or assigned under an earlier split
        arm.people += 1
        arm.attempts += len(placed)
        arm.contacts += any(a.get("outcome") == "conversation" for a in placed)
        arm.successes += any(a.get("success") is True for a in placed)
        arm.promises += any(_promised(a, raw.get("variables") or {}) for a in placed)
        arm.cost += sum((d.cents(a.get("cost_cents")) for a in placed), Decimal(0))


def _promised(attempt: dict[str, Any], sent: dict[str, Any]) -> bool:
    got = attempt.get("collected") or {}
    return any(got.get(k) not in (None, "") and sent.get(k) != got.get(k)
               for k in (*d.PROMISE_AMOUNT_KEYS, *d.PROMISE_DATE_KEYS))


async def rested_days(accounts: set[str], flt: d.ReportFilter) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(account, number) → [(local day, reason)] of the rests within the report's dates (a small collection:
    one document per number and day rested)."""
    out: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    if not accounts:
        return out
    cursor = CallerIdRest.get_pymongo_collection().find({"account_id": {"$in": sorted(accounts)}})
    async for raw in cursor:
        try:
            day = date.fromisoformat(raw["day"])
        except (KeyError, ValueError):
            continue
        if flt.has_day(day):
            out[(raw["account_id"], raw["number"])].append((raw["day"], raw.get("reason") or ""))
    return out


async def dialing_sections(tally: DialingTally, flt: d.ReportFilter, accounts: set[str]) -> dict[str, d.Section]:
    rests = await rested_days(accounts, flt)
    return {"caller_ids": caller_id_section(tally, rests), "ab_arms": arm_section(tally)}


def caller_id_section(tally: DialingTally, rests: dict[tuple[str, str], list[tuple[str, str]]]) -> d.Section:
    keys = sorted(set(tally.numbers) | set(rests))
    rows = []
    for account, number in keys:
        n = tally.numbers.get((account, number)) or _Number()
        rested = sorted(rests.get((account, number), []))
        rows.append([account, number, ", ".join(sorted(n.batches)), n.calls, n.answered, d.ratio(n.answered, n.calls),
                     n.contacts, len(rested), ", ".join(day for day, _ in rested),
                     rested[-1][1] if rested else ""])
    return d.Section("caller_ids", "Calls per caller id (from-number)", [
        d.Column("account", "text"), d.Column("from_number", "text"), d.Column("batches", "text"), d.Column("calls"),
        d.Column("answered"), d.Column("answer_rate", "rate"), d.Column("contacts"), d.Column("rested_days"),
        d.Column("rested_on", "text"), d.Column("last_rest_reason", "text")], rows)


def arm_section(tally: DialingTally) -> d.Section:
    rows = []
    for batch_id, arms in sorted(tally.arms.items()):
        stats = [ArmStats(agent, a.people, a.attempts, a.contacts, a.successes, float(a.cost))
                 for agent, a in arms.items()]
        versus = {c.variant: c for c in compare(stats)}
        for agent, a in arms.items():
            c = versus.get(agent)
            rows.append([
                batch_id, agent, Decimal(repr(tally.weights[batch_id][agent])), a.people, a.attempts, a.contacts,
                a.successes, a.promises, d.ratio(a.successes, a.people), a.cost,
                d.ratio(a.cost, a.successes, d.CENTS_PLACES),
                _rate(c.difference) if c else None, _rate(c.low) if c else None, _rate(c.high) if c else None,
                c.verdict if c else "control"])
    return d.Section("ab_arms", "A/B agent splits: per arm, against the first arm", [
        d.Column("batch", "text"), d.Column("agent_id", "text"), d.Column("weight", "number"), d.Column("people"),
        d.Column("attempts"), d.Column("contacts"), d.Column("successes"), d.Column("promises"),
        d.Column("success_rate", "rate"), d.Column("cost_cents", "cents"), d.Column("cost_per_success_cents", "cents"),
        d.Column("difference", "rate"), d.Column("ci95_low", "rate"), d.Column("ci95_high", "rate"),
        d.Column("verdict", "text")], rows)


def _rate(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(d.RATE_PLACES)

