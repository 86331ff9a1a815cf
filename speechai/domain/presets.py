"""Jurisdiction presets: they narrow a batch's settings and person policy, never widen them.

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # settings and caps import this module; import them lazily to avoid a cycle
    from speechai.domain.caps import PersonPolicy
    from speechai.domain.settings import CallSettings


class Preset(StrEnum):
    NONE = "none"
    CHILE = "chile"
    US_REG_F = "us_reg_f"


@dataclass(frozen=True)
class _Rules:
    hours: tuple[time, time] | None = None
    days: frozenset[int] | None = None
    holidays_country: str | None = None
    max_calls_per_day: int | None = None
    max_no_answer_days: int | None = None
    rolling_window_days: int | None = None
    max_calls_in_window: int | None = None
    quiet_days_after_conversation: int | None = None


_RULES: dict[Preset, _Rules] = {
    Preset.NONE: _Rules(),
    # Ley 19.496 art. 37 (Ley 21.320): Mon–Sat 08:00–20:00, no holidays, one contact per week.
    Preset.CHILE: _Rules(hours=(time(8), time(20)), days=frozenset(range(1, 7)), holidays_country="CL",
                         rolling_window_days=7, max_calls_in_window=1),
    # 12 CFR 1006.6(b)(1): 08:00–21:00 local; 12 CFR 1006.14(b)(2): ≤7 attempts in 7 days, and none
    # within 7 days after a conversation.
    Preset.US_REG_F: _Rules(hours=(time(8), time(21)), rolling_window_days=7, max_calls_in_window=7,
                            quiet_days_after_conversation=7),
}


def apply_preset(settings: CallSettings, preset: Preset) -> CallSettings:
    """Intersect hours and days with the preset's, add its holiday calendar, tighten the person policy.

    Raises ValueError naming the field when the intersection leaves nothing to dial.
    """
    from speechai.domain.settings import HourRange

    rules = _RULES[Preset(preset)]
    if rules == _Rules():
        return settings
    update: dict[str, object] = {}
    if rules.hours is not None:
        lo, hi = rules.hours
        ranges = [HourRange(start=max(r.start, lo), end=min(r.end, hi))
                  for r in settings.allowed_hours if max(r.start, lo) < min(r.end, hi)]
        if not ranges:
            asked = ", ".join(f"{r.start:%H:%M}-{r.end:%H:%M}" for r in settings.allowed_hours)
            raise ValueError(f"allowed_hours [{asked}] lie outside preset {preset.value}'s "
                             f"{lo:%H:%M}-{hi:%H:%M}: nothing left to dial")
        update["allowed_hours"] = ranges
        waves = [w for w in settings.waves if any(r.contains(w) for r in ranges)]
        if settings.waves and not waves:
            # dropping every wave would mean "dial any time": that would widen, so refuse
            raise ValueError(f"waves {[w.isoformat() for w in settings.waves]} all lie outside preset "
                             f"{preset.value}'s {lo:%H:%M}-{hi:%H:%M}")
        update["waves"] = waves
    if rules.days is not None:
        days = sorted(set(settings.days_of_week) & rules.days)
        if not days:
            raise ValueError(f"days_of_week {settings.days_of_week} lie outside preset {preset.value}'s "
                             f"{sorted(rules.days)}: nothing left to dial")
        update["days_of_week"] = days
    if rules.holidays_country and rules.holidays_country not in settings.holiday_countries:
        update["extra_holiday_countries"] = sorted({*settings.extra_holiday_countries, rules.holidays_country})
    base = settings.person_policy.to_policy()
    tightened = preset_person_policy(preset, base)
    if tightened != base:
        update["person_policy"] = settings.person_policy.model_copy(update=vars(tightened))
    if settings.preset == Preset.NONE:
        update["preset"] = Preset(preset)
    return settings.model_copy(update=update)


def preset_person_policy(preset: Preset, base: PersonPolicy) -> PersonPolicy:
    """The tighter of ``base`` and the preset, field by field (None = no limit).

    Counts take the minimum, durations (window, quiet period) the maximum. Combining the window pair
    field by field can only be stricter than either pair alone.
    """
    rules = _RULES[Preset(preset)]
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
