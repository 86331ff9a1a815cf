"""Negotiation flows per debtor segment: ordered rules on a person's fields, first match wins.

A rule matches on ``days_late``, ``amount`` (the total debt), ``instalments`` and any loaded column (a job
variable), each by an inclusive number range, one value or a list of values; it chooses the agent, extra
dynamic variables for the call and call-setting overrides. The last rule is the default (no conditions),
so every person lands in exactly one segment. Pure: no database, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from speechai.domain.settings import CallSettings, HourRange, merge_call_settings, short

MAX_RULES = 50
MAX_CONDITIONS = 20
MAX_IN_VALUES = 500
MAX_SEGMENT_VARIABLES = 30
MAX_VALUE_CHARS = 500
MAX_AGENT_ID_CHARS = 200
# What a segment may change of the batch's settings: when and how often its people are called, and first.
OVERRIDABLE = ("allowed_hours", "days_of_week", "waves", "max_attempts", "priority", "retry_delay_min")
# Matching names for the person's debt figures, as the loader records them in the job's variables.
ALIASES = {"amount": "total_debt"}
NUMERIC_FIELDS = ("days_late", "amount", "instalments")

# Settings that allow every hour and day: a rule's overrides are checked for their bounds against these,
# and for their fit with the batch's own hours when the batch is known (``validate_rules``).
_ANY_TIME = CallSettings(allowed_hours=[HourRange(start=time(0), end=time(23, 59, 59, 999999))],
                         days_of_week=[1, 2, 3, 4, 5, 6, 7])
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _shorthand(value: object) -> object:
    """``5`` or ``"gold"`` means equality, ``["a", "b"]`` a list of values; an object is read as written."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"in": value}
    return {"eq": value}


def _text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"must be text or a number, got {short(value)}")
    return str(value)


Text = Annotated[str, BeforeValidator(_text)]


class Condition(BaseModel):
    """One field's test: ``eq`` (one value), ``in`` (any of a list) or ``min``/``max`` (inclusive numbers)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    eq: Text | None = Field(None, max_length=MAX_VALUE_CHARS)
    in_: list[Annotated[Text, Field(max_length=MAX_VALUE_CHARS)]] | None = Field(
        None, alias="in", min_length=1, max_length=MAX_IN_VALUES)
    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = [k for k, on in (("eq", self.eq is not None), ("in", self.in_ is not None),
                                 ("range", self.min is not None or self.max is not None)) if on]
        if len(kinds) != 1:
            raise ValueError(f"a condition is one of eq, in or min/max; got {kinds or 'none'}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min:g} is above max {self.max:g}")
        return self

    @property
    def is_range(self) -> bool:
        return self.min is not None or self.max is not None

    @property
    def low(self) -> float:
        return float("-inf") if self.min is None else self.min

    @property
    def high(self) -> float:
        return float("inf") if self.max is None else self.max

    def values(self) -> set[str]:
        return {self.eq} if self.eq is not None else set(self.in_ or ())

    def holds(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.is_range:
            n = number(value)
            return n is not None and self.low <= n <= self.high
        return value in self.values()

    def describe(self) -> str:
        if self.is_range:
            return f"{'' if self.min is None else f'{self.min:g}'}..{'' if self.max is None else f'{self.max:g}'}"
        return repr(self.eq) if self.eq is not None else f"in {sorted(self.values())}"


class SegmentRule(BaseModel):
    """A segment: its conditions (none: the default rule) and what its people's calls get."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    match: dict[str, Annotated[Condition, BeforeValidator(_shorthand)]] = Field(
        default_factory=dict, max_length=MAX_CONDITIONS)
    agent_id: str | None = Field(None, min_length=1, max_length=MAX_AGENT_ID_CHARS)
    variables: dict[str, Annotated[Text, Field(max_length=MAX_VALUE_CHARS)]] = Field(
        default_factory=dict, max_length=MAX_SEGMENT_VARIABLES)
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"segment name {short(v)} must be letters, digits, '_', '.', '-' (max 64)")
        return v

    @field_validator("match")
    @classmethod
    def _fields(cls, v: dict[str, Condition]) -> dict[str, Condition]:
        for fname, cond in v.items():
            if not _VAR.match(fname):
                raise ValueError(f"match field {short(fname)} is not a column or variable name")
            if fname in NUMERIC_FIELDS and not cond.is_range and not all(number(x) is not None
                                                                         for x in cond.values()):
                raise ValueError(f"match field {fname} is a number; got {cond.describe()}")
        return v

    @field_validator("variables")
    @classmethod
    def _variables(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not _VAR.match(k)]
        if bad:
            raise ValueError(f"variable names {[short(b) for b in bad]} must be letters, digits and '_'")
        return v

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(OVERRIDABLE))
        if unknown:
            raise ValueError(f"overrides {unknown} cannot be set per segment; allowed: {', '.join(OVERRIDABLE)}")
        try:  # the same bounds as the batch's own settings; fit with the batch's is checked at load
            merged = merge_call_settings(_ANY_TIME, v)
        except ValidationError as exc:
            raise ValueError(f"overrides: {_first_error(exc)}") from None
        dumped = merged.model_dump(mode="json")
        return {k: dumped[k] for k in v}  # normalised (sorted, de-duplicated) as the batch would hold them

    @property
    def is_default(self) -> bool:
        return not self.match

    def matches(self, fields: Mapping[str, str | None]) -> bool:
        return all(cond.holds(fields.get(fname)) for fname, cond in self.match.items())


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {e['msg']}" if where else e["msg"]


class Segmentation(BaseModel):
    """The batch's rules in order; the last is the one default rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[SegmentRule] = Field(min_length=1, max_length=MAX_RULES)

    @model_validator(mode="after")
    def _shape(self) -> Segmentation:
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"segment names must be unique; repeated: {twice}")
        defaults = [r.name for r in self.rules if r.is_default]
        if len(defaults) != 1:
            raise ValueError(f"exactly one default rule (no match conditions) is required, got {len(defaults)}"
                             + (f": {defaults}" if defaults else ""))
        if not self.rules[-1].is_default:
            raise ValueError(f"the default rule {defaults[0]!r} must be the last; rules after it are unreachable")
        return self


def check_rules(rules: Sequence[SegmentRule | dict[str, Any]]) -> list[SegmentRule]:
    """The rules validated as one segmentation (empty: no segments); ValueError naming rule and field."""
    if not rules:
        return []
    return list(Segmentation(rules=list(rules)).rules)  # type: ignore[arg-type]


# --- matching -------------------------------------------------------------------------------------


def number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        n = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return float(n) if n.is_finite() else None


def person_fields(variables: Mapping[str, str]) -> dict[str, str | None]:
    """What rules match on: the job's variables, with the matching names of the debt figures."""
    out: dict[str, str | None] = dict(variables)
    for alias, stored in ALIASES.items():
        out.setdefault(alias, variables.get(stored))
    return out


def choose(rules: Sequence[SegmentRule], person: Mapping[str, str | None]) -> SegmentRule | None:
    """The first rule whose conditions all hold (the default last); None when there are no rules."""
    return next((r for r in rules if r.matches(person)), None)


def settings_of(base: CallSettings, rule: SegmentRule | None) -> CallSettings:
    """``base`` with the rule's overrides applied (validated; the batch's preset still narrows it)."""
    if rule is None or not rule.overrides:
        return base
    return merge_call_settings(base, rule.overrides)


# --- validation against a file ----------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    rule: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"segment {self.rule!r}, field {self.field!r}: {self.message}" if self.field \
            else f"segment {self.rule!r}: {self.message}"


def validate_rules(rules: Sequence[SegmentRule], known_fields: set[str],
                   base: CallSettings | None = None) -> tuple[list[Finding], list[Finding]]:
    """(errors, warnings) of ``rules`` for a file whose people have ``known_fields``.

    Errors: a field no person has, overrides that do not fit the batch's settings. Warnings: a rule some
    of whose people an earlier rule takes (overlapping conditions), a rule an earlier one takes whole.
    """
    known = known_fields | {a for a, stored in ALIASES.items() if stored in known_fields}
    errors = [Finding(r.name, f, f"no such column in the file; known: {', '.join(sorted(known)) or 'none'}")
              for r in rules for f in r.match if f not in known]
    if base is not None:
        for r in rules:
            try:
                settings_of(base, r).effective()
            except (ValidationError, ValueError) as exc:
                text = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
                errors.append(Finding(r.name, "overrides", f"do not fit the batch's settings: {text}"))
    warnings: list[Finding] = []
    for j, later in enumerate(rules):
        if later.is_default:
            continue
        for earlier in rules[:j]:
            if covers(earlier, later):
                warnings.append(Finding(later.name, "", f"unreachable: rule {earlier.name!r} before it "
                                                        "matches everyone it would"))
                break
            if (shared := overlap(earlier, later)) is not None:
                warnings.append(Finding(later.name, shared, f"overlaps rule {earlier.name!r} "
                                        f"({earlier.match[shared].describe()} vs {later.match[shared].describe()});"
                                        f" people in both go to {earlier.name!r}"))
    return errors, warnings


def _intersects(a: Condition, b: Condition) -> bool:
    if a.is_range and b.is_range:
        return max(a.low, b.low) <= min(a.high, b.high)
    if a.is_range or b.is_range:
        rng, vals = (a, b) if a.is_range else (b, a)
        return any(rng.holds(v) for v in vals.values())
    return bool(a.values() & b.values())


def _contains(outer: Condition, inner: Condition) -> bool:
    if outer.is_range:
        if inner.is_range:
            return outer.low <= inner.low and inner.high <= outer.high
        return all(outer.holds(v) for v in inner.values())
    return not inner.is_range and inner.values() <= outer.values()


def overlap(earlier: SegmentRule, later: SegmentRule) -> str | None:
    """A field both rules test where some person can satisfy both rules; None when none can."""
    shared = [f for f in later.match if f in earlier.match]
    if not shared or not all(_intersects(earlier.match[f], later.match[f]) for f in shared):
        return None
    return next((f for f in shared if earlier.match[f].is_range), shared[0])


def covers(earlier: SegmentRule, later: SegmentRule) -> bool:
    """Everyone ``later`` matches, ``earlier`` matches too (so ``later`` never gets anyone)."""
    return all(f in later.match and _contains(c, later.match[f]) for f, c in earlier.match.items())


def rule_named(rules: Sequence[SegmentRule], name: str | None) -> SegmentRule | None:
    """The rule a job recorded; None when it has none or the rule was since removed."""
    return None if name is None else next((r for r in rules if r.name == name), None)
