"""Reservation arithmetic per plan, and stable phone rotation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from speechai.domain.credits import estimate_reservation, settle
from speechai.domain.phones import next_usable_phone
from speechai.domain.settings import CallSettings
from speechai.store.models import Phone, Plan

S = CallSettings(max_call_duration_s=300)


def test_reservation_is_the_worst_case_call() -> None:
    assert estimate_reservation("unlimited", S, cents_per_minute=12) == (0, 0)
    assert estimate_reservation("minutes", S, cents_per_minute=12) == (0, 300_000)
    assert estimate_reservation("credits", S, cents_per_minute=12) == (60, 0)
    # partial minutes round up: 90 s at 7 c/min = 10.5 c -> 11
    assert estimate_reservation(Plan.CREDITS, CallSettings(max_call_duration_s=90), cents_per_minute=7) == (11, 0)


def test_settle_refunds_what_was_not_used() -> None:
    assert settle("credits", reserved_cents=60, reserved_ms=0, cost_cents=17.2, duration_ms=95_000) == (42, 0)
    assert settle("minutes", reserved_cents=0, reserved_ms=300_000, cost_cents=17.2, duration_ms=95_000) == \
        (0, 205_000)
    assert settle("unlimited", reserved_cents=0, reserved_ms=0, cost_cents=17.2, duration_ms=95_000) == (0, 0)


def test_settle_of_a_failed_dial_returns_everything_and_overruns_go_negative() -> None:
    assert settle("credits", reserved_cents=60, reserved_ms=0, cost_cents=0, duration_ms=0) == (60, 0)
    assert settle("credits", reserved_cents=60, reserved_ms=0, cost_cents=61.01, duration_ms=0) == (-2, 0)
    assert settle("minutes", reserved_cents=0, reserved_ms=300_000, cost_cents=0, duration_ms=301_000) == (0, -1000)


def test_costs_are_cents_not_dollars() -> None:
    # a 9.5-cent call costs 10 cents of balance, never 950
    assert settle("credits", reserved_cents=100, reserved_ms=0, cost_cents=9.5, duration_ms=60_000) == (90, 0)


def test_bad_plan_or_amounts_are_refused() -> None:
    with pytest.raises(ValueError, match="'gold'"):
        estimate_reservation("gold", S, cents_per_minute=1)
    with pytest.raises(ValueError, match="cost_cents=-1"):
        settle("credits", reserved_cents=0, reserved_ms=0, cost_cents=-1, duration_ms=0)


@dataclass
class P:
    number: str
    bad: bool = False


def test_round_robin_skips_bad_phones_and_wraps() -> None:
    phones = [P("+1"), P("+2", bad=True), P("+3")]
    assert next_usable_phone(phones, -1) == 0
    assert next_usable_phone(phones, 0) == 2
    assert next_usable_phone(phones, 2) == 0


def test_single_good_phone_is_reused_and_none_when_all_bad() -> None:
    assert next_usable_phone([P("+1", bad=True), P("+2")], 1) == 1
    assert next_usable_phone([P("+1", bad=True)], 0) is None
    assert next_usable_phone([], 0) is None


def test_store_phone_model_fits_the_protocol() -> None:
    phones = [Phone(number="+56911111111", bad=True), Phone(number="+56922222222")]
    assert next_usable_phone(phones, 0) == 1
