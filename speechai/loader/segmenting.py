"""Segment rules at load time: checked against the file's columns, then each person's segment chosen.

A rule on a column the file does not have refuses the load, naming the rule and the field; overlapping or
unreachable rules are warnings in the load summary. Each job records its segment's name and priority.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from speechai.domain.segments import SegmentRule, choose, person_fields, settings_of, validate_rules
from speechai.domain.settings import CallSettings
from speechai.loader.columns import ColumnMap
from speechai.loader.errors import LoadError

# The variables a job of each format carries besides its columns' (``people.Person.variables``).
_ALWAYS = ("name", "rut")
_COLLECTION = ("total_debt", "instalments", "first_due_date", "last_due_date")
_INFO = ("company", "email", "age", "city", "days_late")


def known_fields(columns: ColumnMap) -> set[str]:
    """Every variable a person of this file can have: what rules may match on."""
    known = {*_ALWAYS, *(f for f in _INFO if f in columns.fields), *(v for _, v in columns.variables)}
    if columns.format == "collection":
        known.update(_COLLECTION)
    return known


def check_segments(rules: Sequence[SegmentRule], columns: ColumnMap, base: CallSettings) -> list[str]:
    """Warnings about ``rules`` for this file; LoadError naming rule and field when one cannot apply."""
    if not rules:
        return []
    errors, warnings = validate_rules(rules, known_fields(columns), base)
    if errors:
        raise LoadError("segment rules refused: " + "; ".join(str(e) for e in errors))
    return [str(w) for w in warnings]


class Segmenter:
    """Chooses each person's segment; the priorities are worked out once per rule, not once per person."""

    def __init__(self, rules: Sequence[SegmentRule], base: CallSettings) -> None:
        self.rules = list(rules)
        self.priority = {r.name: settings_of(base, r).priority for r in self.rules}

    def __call__(self, variables: Mapping[str, str]) -> dict[str, Any]:
        """The job fields a person's segment sets: its name and the priority its calls are due with."""
        rule = choose(self.rules, person_fields(variables))
        if rule is None:
            return {"segment": None, "priority": 0}
        return {"segment": rule.name, "priority": self.priority[rule.name]}
