"""How the report reads money and collected values, and the admin commands' durations."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from speechai.admin.command import parse_duration
from speechai.reports.data import Tally, cents, number, parse_day, ratio
from speechai.reports.routes import report_filter


@pytest.mark.parametrize(("text", "value"), [
    ("150000", Decimal(150000)), ("150.000", Decimal(150000)), ("150.000,50", Decimal("150000.50")),
    ("$150,000.50", Decimal("150000.50")), ("1,5", Decimal("1.5")), ("12.5", Decimal("12.5")), (7, Decimal(7)),
    ("", None), ("mañana", None), (True, None), (None, None), ("inf", None),
])
def test_collected_numbers(text, value) -> None:
    assert number(text) == value


def test_cents_sum_exactly() -> None:
    t = Tally()
    costs = (15.17, 7.585, 3.034, 0.1, 0.2)
    for cost in costs:
        t.add({"placed": True, "outcome": "conversation", "cost_cents": cost, "duration_ms": 1000})
    assert t.cost == Decimal("26.089")
    assert 0.1 + 0.2 != 0.3 and cents(0.1) + cents(0.2) == Decimal("0.3")  # what float sums would get wrong
    assert cents(None) == 0 and cents(True) == 0 and cents(12) == Decimal(12)
    assert ratio(1, 3) == Decimal("0.3333") and ratio(1, 0) is None
    t.add({"placed": False, "outcome": "capacity"})
    t.add({"placed": True, "outcome": None})
    assert (t.calls, t.not_placed, t.in_progress, t.contacts) == (6, 1, 1, 5)


def test_dates_and_filters() -> None:
    assert parse_day("2026-03-05") == date(2026, 3, 5) and parse_day("05/03/2026") is None
    flt = report_filter("b1", None, "2026-03-02", "2026-03-02")
    assert flt.has_day(date(2026, 3, 2)) and not flt.has_day(date(2026, 3, 3))
    with pytest.raises(ValueError, match=r"to must be a date as YYYY-MM-DD, got '3 March'"):
        report_filter(None, None, None, "3 March")
    with pytest.raises(ValueError, match="batch is longer than 256"):
        report_filter("x" * 300, None, None, None)


def test_durations() -> None:
    assert parse_duration("7d") == timedelta(days=7) and parse_duration(" 12H ") == timedelta(hours=12)
    assert parse_duration("2w") == timedelta(weeks=2) and parse_duration("90s") == timedelta(seconds=90)
    with pytest.raises(ValueError, match="--older-than must be a number and a unit"):
        parse_duration("7 days")
