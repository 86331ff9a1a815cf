"""Segment rules, pure: matching (first match wins, the default last), validation naming rule and field,
overlap and unreachable-rule warnings, overrides held to the batch settings' bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from speechai.domain.segments import check_rules, choose, person_fields, settings_of, validate_rules
from speechai.domain.settings import CallSettings

RULES = [
    {"name": "early", "match": {"days_late": {"min": 0, "max": 30}}, "agent_id": "agent_soft",
     "variables": {"discount": "10%"}, "overrides": {"priority": 50, "max_attempts": 2}},
    {"name": "big-late", "match": {"days_late": {"min": 31}, "amount": {"min": 500000}}, "agent_id": "agent_firm",
     "variables": {"instalment_offer": "6"}},
    {"name": "city", "match": {"city": ["Talca", "Curicó"]}},
    {"name": "default"},
]


def test_first_match_wins_and_the_default_takes_the_rest() -> None:
    rules = check_rules(RULES)
    assert choose(rules, person_fields({"days_late": "12", "total_debt": "900000"})).name == "early"
    assert choose(rules, person_fields({"days_late": "45", "total_debt": "900000"})).name == "big-late"
    assert choose(rules, person_fields({"days_late": "45", "total_debt": "1000", "city": "Talca"})).name == "city"
    assert choose(rules, person_fields({"days_late": "45", "total_debt": "1000"})).name == "default"
    # a missing or non-numeric value satisfies no condition on it
    assert choose(rules, person_fields({"days_late": "mucho"})).name == "default"
    assert choose(rules, {}).name == "default"
    assert choose([], {"days_late": "1"}) is None


def test_range_bounds_are_inclusive_and_equality_is_text() -> None:
    rules = check_rules([{"name": "a", "match": {"days_late": {"min": 30, "max": 60}, "plan": "gold"}},
                         {"name": "d"}])
    assert choose(rules, {"days_late": "30", "plan": "gold"}).name == "a"
    assert choose(rules, {"days_late": "60", "plan": "gold"}).name == "a"
    assert choose(rules, {"days_late": "61", "plan": "gold"}).name == "d"
    assert choose(rules, {"days_late": "45", "plan": "Gold"}).name == "d"


@pytest.mark.parametrize(("rules", "message"), [
    ([{"name": "a", "match": {"days_late": {"min": 1}}}], "exactly one default rule"),
    ([{"name": "d"}, {"name": "a", "match": {"days_late": {"min": 1}}}], "must be the last"),
    ([{"name": "d"}, {"name": "d2"}], "exactly one default rule (no match conditions) is required, got 2"),
    ([{"name": "a", "match": {"x": "1"}}, {"name": "a"}], "repeated: ['a']"),
    ([{"name": "a", "match": {"days_late": {"min": 9, "max": 3}}}, {"name": "d"}], "min 9 is above max 3"),
    ([{"name": "a", "match": {"days_late": "many"}}, {"name": "d"}], "days_late is a number"),
    ([{"name": "a", "overrides": {"max_attempts": 0}}], "max_attempts"),
    ([{"name": "a", "overrides": {"timezone": "UTC"}}], "cannot be set per segment"),
    ([{"name": "bad name"}], "segment name 'bad name'"),
])
def test_bad_rules_are_refused_naming_rule_and_field(rules: list, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        check_rules(rules)
    assert message in str(exc.value)


def test_overrides_use_the_batch_settings_bounds_and_merge_onto_them() -> None:
    [rule] = check_rules([{"name": "d", "overrides": {"allowed_hours": [{"start": "10:00", "end": "13:00"}],
                                                     "priority": 7}}])
    base = CallSettings(max_attempts=4, preset="chile")
    merged = settings_of(base, rule)
    assert merged.priority == 7 and merged.max_attempts == 4 and merged.preset.value == "chile"
    assert [(h.start.hour, h.end.hour) for h in merged.allowed_hours] == [(10, 13)]
    with pytest.raises(ValidationError, match="priority"):
        check_rules([{"name": "d", "overrides": {"priority": 101}}])


def test_unknown_fields_are_errors_and_overlaps_warnings() -> None:
    rules = check_rules([
        {"name": "a", "match": {"days_late": {"min": 0, "max": 30}}},
        {"name": "b", "match": {"days_late": {"min": 20, "max": 60}}},  # 20..30 goes to a
        {"name": "c", "match": {"days_late": {"min": 5, "max": 10}}},  # wholly inside a: never reached
        {"name": "e", "match": {"days_late": {"min": 61}, "plan": "gold"}},  # no such column
        {"name": "default"},
    ])
    errors, warnings = validate_rules(rules, {"days_late", "total_debt"})
    assert [(e.rule, e.field) for e in errors] == [("e", "plan")]
    assert "no such column" in str(errors[0])
    assert [(w.rule, w.field) for w in warnings] == [("b", "days_late"), ("c", "")]
    assert "overlaps rule 'a' (0..30 vs 20..60)" in str(warnings[0]) and "unreachable" in str(warnings[1])


def test_disjoint_rules_warn_nothing_and_amount_is_known_from_the_debt() -> None:
    rules = check_rules([{"name": "a", "match": {"amount": {"max": 99999}}},
                         {"name": "b", "match": {"amount": {"min": 100000}}}, {"name": "d"}])
    assert validate_rules(rules, {"total_debt"}) == ([], [])


def test_overrides_that_do_not_fit_the_batch_are_errors() -> None:
    rules = check_rules([{"name": "d", "overrides": {"waves": ["08:00"]}}])  # bounds only: hours unknown yet
    errors, _ = validate_rules(rules, set(), CallSettings(allowed_hours=[{"start": "07:00", "end": "12:00"}]))
    assert errors == []
    errors, _ = validate_rules(rules, set(), CallSettings(allowed_hours=[{"start": "09:00", "end": "12:00"}]))
    assert [(e.rule, e.field) for e in errors] == [("d", "overrides")] and "waves" in errors[0].message


BOUNDS = st.integers(0, 200)


@given(st.lists(st.tuples(BOUNDS, BOUNDS), min_size=1, max_size=6), st.integers(-5, 210))
def test_choose_is_the_first_rule_whose_range_holds(ranges: list[tuple[int, int]], late: int) -> None:
    rules = check_rules([{"name": f"r{i}", "match": {"days_late": {"min": min(a, b), "max": max(a, b)}}}
                         for i, (a, b) in enumerate(ranges)] + [{"name": "default"}])
    expected = next((f"r{i}" for i, (a, b) in enumerate(ranges) if min(a, b) <= late <= max(a, b)), "default")
    assert choose(rules, {"days_late": str(late)}).name == expected
    _, warnings = validate_rules(rules, {"days_late"})
    # a rule is warned about exactly when some earlier range shares a day with it
    warned = {w.rule for w in warnings}
    for j, (a, b) in enumerate(ranges):
        shares = any(max(min(a, b), min(c, d)) <= min(max(a, b), max(c, d)) for c, d in ranges[:j])
        assert (f"r{j}" in warned) == shares
