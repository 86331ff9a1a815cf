"""The agents' metrics arithmetic: exact, and equal to the definitions computed the plain way."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speechai.domain.agent_metrics import Tally, metrics_by_user, metrics_of, round_half_up, tally_calls, totals

STATUSES = ["completed", "no_answer", "dropped", "failed", "in_progress"]
facts = st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(STATUSES),
                           st.integers(min_value=0, max_value=10**10)), max_size=60)


def test_aht_and_rates_of_a_known_day() -> None:
    [m] = metrics_by_user(tally_calls([("u1", "completed", 1_001), ("u1", "completed", 2_000),
                                       ("u1", "completed", 2_000), ("u1", "no_answer", 5_000),
                                       ("u1", "dropped", 700), ("u1", "in_progress", None)]))
    assert (m.calls, m.in_progress, m.successes, m.failures, m.total_talk_ms) == (5, 1, 3, 2, 5_001)
    assert m.aht == Fraction(5_001, 3) and m.aht_ms == 1_667
    assert m.success == Fraction(3, 5) and m.success_rate == 0.6


def test_halves_round_up_and_nothing_is_lost_to_floats() -> None:
    [m] = metrics_by_user(tally_calls([("u", "completed", 1), ("u", "completed", 2)]))
    assert m.aht == Fraction(3, 2) and m.aht_ms == 2
    big = 10**17 + 1  # beyond float's exact integers
    [m] = metrics_by_user(tally_calls([("u", "completed", big), ("u", "completed", big)]))
    assert m.aht_ms == big and m.total_talk_ms == 2 * big
    assert round_half_up(Fraction(5, 2)) == 3 and round_half_up(Fraction(7, 3)) == 2


def test_no_calls_no_rates() -> None:
    m = metrics_of("u", Tally())
    assert (m.calls, m.aht_ms, m.success_rate) == (0, None, None)
    with pytest.raises(ValueError, match="negative"):
        Tally().add("completed", -1)


@given(facts)
def test_metrics_match_the_plain_definitions(calls: list[tuple[str, str, int]]) -> None:
    got = {m.user_id: m for m in metrics_by_user(tally_calls(calls))}
    for user in {u for u, _, _ in calls}:
        mine = [(s, d) for u, s, d in calls if u == user]
        ended = [(s, d) for s, d in mine if s != "in_progress"]
        done = [d for s, d in ended if s == "completed"]
        m = got[user]
        assert (m.calls, m.successes, m.failures, m.in_progress) == (
            len(ended), len(done), len(ended) - len(done), len(mine) - len(ended))
        assert m.total_talk_ms == sum(done)
        assert m.aht_ms == (None if not done else (2 * sum(done) + len(done)) // (2 * len(done)))
        assert m.success == (Fraction(len(done), len(ended)) if ended else None)


@given(facts)
def test_totals_equal_one_user_holding_every_call(calls: list[tuple[str, str, int]]) -> None:
    everyone = totals(tally_calls(calls))
    [alone] = metrics_by_user(tally_calls([("x", s, d) for _, s, d in calls])) or [metrics_of("x", Tally())]
    assert (everyone.calls, everyone.successes, everyone.total_talk_ms, everyone.aht, everyone.success) == (
        alone.calls, alone.successes, alone.total_talk_ms, alone.aht, alone.success)
