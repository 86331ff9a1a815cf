"""Plain policy data shared by settings, presets and caps: no imports of other domain modules.

The jurisdiction table lives here as data so that ``settings`` (which validates a batch against its
preset) and ``caps`` (which enforces the person limits) both read it without importing each other.

Facts as the product relies on them (not legal advice):

* Chile — Ley 19.496 (consumer protection) art. 37, as amended by Ley 21.320 (2021), on extrajudicial
  collection: contact only Monday to Saturday, 08:00–20:00, never on public holidays; at most one
  call-or-visit per week per debtor. We take the safest reading: a rolling 7 days measured exactly
  from the last attempt, and every placed attempt counts whether answered or not.
* USA — CFPB Regulation F: 12 CFR 1006.14(b)(2) presumes harassment above 7 call attempts within
  7 consecutive days, or any call within 7 days after a telephone conversation about the debt;
  12 CFR 1006.6(b)(1) makes 08:00–21:00 at the consumer's local time the convenient hours.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import time
from enum import StrEnum


class Preset(StrEnum):
    NONE = "none"
    CHILE = "chile"
    US_REG_F = "us_reg_f"


@dataclass(frozen=True)
class PersonPolicy:
    max_calls_per_day: int | None = 3
    max_no_answer_days: int | None = 3  # exclude after calls on N distinct local days with no answer
    rolling_window_days: int | None = None  # e.g. Chile: 7
    max_calls_in_window: int | None = None  # e.g. Chile: 1, Reg F: 7
    quiet_days_after_conversation: int | None = None  # Reg F: 7


@dataclass(frozen=True)
class PresetRules:
    """What a preset imposes; None = the preset leaves that aspect to the batch."""

    hours: tuple[time, time] | None = None
    days: frozenset[int] | None = None
    holidays_country: str | None = None
    max_calls_per_day: int | None = None
    max_no_answer_days: int | None = None
    rolling_window_days: int | None = None
    max_calls_in_window: int | None = None
    quiet_days_after_conversation: int | None = None


PRESET_RULES: dict[Preset, PresetRules] = {
    Preset.NONE: PresetRules(),
    # Ley 19.496 art. 37 (Ley 21.320): Mon–Sat 08:00–20:00, no holidays, one contact per week.
    Preset.CHILE: PresetRules(hours=(time(8), time(20)), days=frozenset(range(1, 7)), holidays_country="CL",
                              rolling_window_days=7, max_calls_in_window=1),
    # 12 CFR 1006.6(b)(1): 08:00–21:00 local; 12 CFR 1006.14(b)(2): ≤7 attempts in 7 days, and none
    # within 7 days after a conversation.
    Preset.US_REG_F: PresetRules(hours=(time(8), time(21)), rolling_window_days=7, max_calls_in_window=7,
                                 quiet_days_after_conversation=7),
}


def rules_of(preset: Preset | str) -> PresetRules:
    return PRESET_RULES[Preset(preset)]


def preset_person_policy(preset: Preset | str, base: PersonPolicy) -> PersonPolicy:
    """The tighter of ``base`` and the preset, field by field (None = no limit).

    Counts take the minimum, durations (window, quiet period) the maximum. Combining the window pair
    field by field can only be stricter than either pair alone.
    """
    rules = rules_of(preset)
    return replace(
        base,
        max_calls_per_day=_tight_min(base.max_calls_per_day, rules.max_calls_per_day),
        max_no_answer_days=_tight_min(base.max_no_answer_days, rules.max_no_answer_days),
        rolling_window_days=_tight_max(base.rolling_window_days, rules.rolling_window_days),
        max_calls_in_window=_tight_min(base.max_calls_in_window, rules.max_calls_in_window),
        quiet_days_after_conversation=_tight_max(base.quiet_days_after_conversation,
                                                 rules.quiet_days_after_conversation),
    )


def _tight_min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _tight_max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
