"""Chile's Subtel numbering rule for mass or automated calls (in force since 13 Aug 2025), as a pure rule:
which caller ids a batch of a given use case may call from. Used where a batch is loaded (loader, upload
route, POST /batches) and where it is dialed (``speechai.dialing.hooks.caller_id_rule``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXISTING_CUSTOMER_USES = ("collection", "reminder", "survey")  # solicited or contractual: +56 600
MARKETING_USES = ("marketing",)  # unsolicited: +56 809
USE_CASES = (*EXISTING_CUSTOMER_USES, *MARKETING_USES)
SOURCE = "Subtel numbering rule for mass or automated calls, in force since 2025-08-13"


@dataclass(frozen=True)
class Violation:
    rule: str  # "CL-600" or "CL-809"
    numbers: tuple[str, ...]
    message: str


def check_use_case(use_case: str | None) -> str | None:
    if use_case is not None and use_case not in USE_CASES:
        raise ValueError(f"use_case {use_case!r} is not one of {', '.join(USE_CASES)} (or unset)")
    return use_case


def chile_prefix(number: str) -> str | None:
    """"600", "809" or None: the prefix of a +56 number's national number (by prefix, not number type:
    the numbering metadata does not know 809)."""
    if not number.startswith("+56"):
        return None
    national = number[3:]
    return national[:3] if national[:3] in ("600", "809") else None


def chile_violations(use_case: str | None, numbers: Iterable[str], *, chile: bool) -> list[Violation]:
    """What breaks the Chile caller-ID rule for a batch of ``use_case`` calling from ``numbers``.

    ``chile``: the batch calls people in Chile (its preset, or a +56 number in its pool). A batch that
    declares no use case is not checked."""
    check_use_case(use_case)
    numbers = list(dict.fromkeys(numbers))
    if use_case is None or not (chile or any(n.startswith("+56") for n in numbers)):
        return []
    need, rule, what = (("600", "CL-600", "collections, reminders and surveys of existing customers")
                        if use_case in EXISTING_CUSTOMER_USES else ("809", "CL-809", "unsolicited marketing"))
    bad = tuple(n for n in numbers if chile_prefix(n) != need)
    if not bad:
        return []
    return [Violation(rule, bad, f"Chile rule {rule} ({SOURCE}): {what} (use case {use_case}) must call from "
                                 f"+56 {need} numbers; not compliant: {', '.join(bad)}")]


def batch_caller_id_violations(*, use_case: str | None, pool: Iterable[str], from_number: str | None,
                               default_from_number: str, preset: str | None = None) -> list[Violation]:
    """The Chile rule for a batch as configured, before or after it is stored (loader, upload route, run):
    its pool if it has one, else its own from-number, else the configured default. Raises ValueError
    naming ``use_case`` when the use case is unknown."""
    numbers = list(pool) or [from_number or default_from_number]
    return chile_violations(use_case, numbers, chile=str(preset or "") == "chile")
