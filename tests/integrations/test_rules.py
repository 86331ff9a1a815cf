"""The pure rules of the integrations: events from a call, retry schedule, the CRM's attempt registration
(the seed's scenarios), and URL refusals."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speechai.domain.crm_rules import active_opportunity, attempt_color, register_attempt
from speechai.domain.delivery_policy import SCHEDULE_S, RetryRules, gives_up, retry_delay_s, should_disable
from speechai.domain.events import promise_of
from speechai.integrations.ssrf import TargetRefused, check_url, is_private


def test_promise_found_in_collected_variables() -> None:
    p = promise_of({"promised_amount": "150000", "promised_payment_date": "2026-03-05"})
    assert p == {"amount": "150000", "amount_text": "150000", "payment_date": "2026-03-05"}
    assert promise_of({"monto_prometido": "$1,500"})["amount"] == "1500"
    assert promise_of({"compromiso_pago": "sí"}) == {"amount": None, "amount_text": None, "payment_date": None}
    assert promise_of({"promised_amount": "", "promise_to_pay": "false", "other": 1}) is None


def test_retry_schedule_backs_off_with_bounded_jitter() -> None:
    rng = random.Random(1)
    delays = [retry_delay_s(n, rng) for n in range(1, 15)]
    for n, d in enumerate(delays, start=1):
        base = SCHEDULE_S[min(n, len(SCHEDULE_S)) - 1]
        assert 0.8 * base <= d <= 1.2 * base
    assert sum(SCHEDULE_S) + 3 * SCHEDULE_S[-1] >= 24 * 3600  # tries go on for at least a day
    rules = RetryRules()
    assert not gives_up(0, 24 * 3600 * 1000, rules) and gives_up(0, 26 * 3600 * 1000, rules)


def test_subscription_disabled_only_after_sustained_failure() -> None:
    rules = RetryRules(disable_after_failures=20, disable_after_s=24 * 3600)
    day = 24 * 3600 * 1000
    assert not should_disable(19, 0, 0, 2 * day, rules)  # not enough failures
    assert not should_disable(50, day, 0, day + 1000, rules)  # a success within the day
    assert should_disable(20, 0, 0, day, rules)


def test_attempt_colors() -> None:
    assert attempt_color(finished=True, answered=True, rejected=False) == "green"
    assert attempt_color(finished=True, answered=True, rejected=True) == "red"
    assert attempt_color(finished=True, answered=False, rejected=False) == "orange"
    assert attempt_color(finished=False, answered=False, rejected=False) == "orange"


def opp(**kw):
    return {"_id": "o1", "status": "pending", "first_call_completed": False, "first_call_attempts": {},
            "created_ms": 1, **kw}


def test_attempts_numbered_in_order_and_same_call_updates() -> None:
    o = register_attempt(opp(), call_id="c1", color="orange", at_ms=10)
    assert o["first_call_attempts"]["1"]["call_id"] == "c1" and o["status"] == "contacted"
    o = register_attempt(o, call_id="c2", color="orange", at_ms=20)
    o = register_attempt(o, call_id="c2", color="orange", at_ms=25, notes="no answer")  # same call: updated
    assert sorted(o["first_call_attempts"]) == ["1", "2"] and o["first_call_attempts"]["2"]["notes"] == "no answer"
    assert o["last_contact_attempt_ms"] == 25 and not o["first_call_completed"]
    o = register_attempt(o, call_id="c3", color="green", at_ms=30)
    assert o["first_call_completed"] and o["first_call_successful_attempt"] == 3
    assert active_opportunity([o]) is None  # a completed first call takes no more attempts


def test_at_most_five_attempts() -> None:
    o = opp()
    for i in range(5):
        o = register_attempt(o, call_id=f"c{i}", color="orange", at_ms=i)
    assert register_attempt(o, call_id="c9", color="green", at_ms=9) is None
    assert register_attempt(o, call_id="c4", color="green", at_ms=9)["first_call_successful_attempt"] == 5


def test_newest_active_opportunity_chosen() -> None:
    old = opp(_id="a", created_ms=1)
    new = opp(_id="b", created_ms=5, status="assigned")
    won = opp(_id="c", created_ms=9, status="won")
    done = opp(_id="d", created_ms=10, first_call_completed=True)
    assert active_opportunity([old, new, won, done])["_id"] == "b"
    assert active_opportunity([won, done]) is None


@given(st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3", "c4", "c5", "c6", "c7"]),
                          st.sampled_from(["orange", "red", "green"])), max_size=12))
def test_attempt_numbers_stay_dense_and_unique(calls) -> None:
    o = opp()
    for n, (call, color) in enumerate(calls):
        if active_opportunity([o]) is None:
            break
        o = register_attempt(o, call_id=call, color=color, at_ms=n) or o
    attempts = o["first_call_attempts"]
    assert sorted(int(k) for k in attempts) == list(range(1, len(attempts) + 1)) and len(attempts) <= 5
    assert len({a["call_id"] for a in attempts.values()}) == len(attempts)


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://10.1.2.3/", "http://[::1]/", "http://localhost:8080/",
                                 "http://169.254.169.254/latest/meta-data", "http://[::ffff:192.168.0.1]/",
                                 "ftp://example.com/", "http://user:pw@example.com/", "http:///nohost"])
def test_private_or_odd_targets_refused(url) -> None:
    with pytest.raises(TargetRefused):
        check_url(url, allow_private=False)


def test_public_and_allowed_private_targets() -> None:
    assert check_url("https://hooks.example.com/x", allow_private=False)
    assert check_url("http://127.0.0.1:9/x", allow_private=True)
    assert is_private("192.168.1.1") and not is_private("8.8.8.8")
