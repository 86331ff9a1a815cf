"""Per-person caps: each rule, and the property that an allowed dial breaks no cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from speechai.domain.caps import CapVerdict, ContactEvent, PersonPolicy, check_person_caps, no_answer_days

SCL = ZoneInfo("America/Santiago")
NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # 12:00 -03, Wednesday
NO_LIMITS = PersonPolicy(max_calls_per_day=None, max_no_answer_days=None)


def ev(hours_ago: float, *, counted: bool = True, answered: bool = False, success: bool = False) -> ContactEvent:
    return ContactEvent(at=NOW - timedelta(hours=hours_ago), counted=counted, answered=answered, success=success)


def check(events: list[ContactEvent], policy: PersonPolicy = NO_LIMITS, **kw: bool) -> CapVerdict:
    return check_person_caps(events, policy, now=NOW, tz=SCL, **kw)


def test_no_history_is_allowed() -> None:
    v = check([], PersonPolicy())
    assert v.allowed and v.reason is None and not v.exclude


def test_success_excludes_forever() -> None:
    assert check([ev(24 * 90, answered=True, success=True)]).exclude
    v = check([], has_success=True)
    assert not v.allowed and v.exclude and "success" in (v.reason or "")


def test_do_not_call_excludes() -> None:
    v = check([], do_not_call=True)
    assert v.exclude and "do-not-call" in (v.reason or "")


def test_daily_cap_retries_at_next_local_midnight() -> None:
    policy = PersonPolicy(max_calls_per_day=3, max_no_answer_days=None)
    two = [ev(1), ev(2)]
    assert check(two, policy).allowed
    v = check([*two, ev(3), ev(24 * 3, counted=True)], policy)
    assert not v.allowed and not v.exclude and v.retry_at == datetime(2026, 3, 5, 3, 0, tzinfo=UTC)
    # uncounted events (capacity, bad number) do not use the cap
    assert check([*two, ev(3, counted=False)], policy).allowed


def test_daily_cap_uses_the_local_date() -> None:
    policy = PersonPolicy(max_calls_per_day=1, max_no_answer_days=None)
    # 13 h ago is 23:00 -03 the previous local day, though the same UTC date
    assert check([ev(13)], policy).allowed
    assert not check([ev(11)], policy).allowed


def test_no_answer_days_exclude_and_reset_on_answer() -> None:
    policy = PersonPolicy(max_calls_per_day=None, max_no_answer_days=3)
    two_days = [ev(1), ev(2), ev(25)]
    assert no_answer_days(two_days, SCL) == 2 and check(two_days, policy).allowed
    three = [*two_days, ev(49)]
    v = check(three, policy)
    assert v.exclude and "3 distinct days" in (v.reason or "")
    # an answered call in between resets the count
    assert check([*three, ev(26, answered=True)], policy).allowed


def test_rolling_window_retries_when_enough_events_leave_it() -> None:
    chile = PersonPolicy(max_calls_per_day=None, max_no_answer_days=None, rolling_window_days=7,
                         max_calls_in_window=1)
    v = check([ev(48)], chile)
    assert not v.allowed and v.retry_at == NOW - timedelta(hours=48) + timedelta(days=7)
    assert check([ev(7 * 24)], chile).allowed  # exactly 7 days ago: out of the window
    regf = PersonPolicy(max_calls_per_day=None, max_no_answer_days=None, rolling_window_days=7,
                        max_calls_in_window=2)
    v = check([ev(10), ev(30), ev(100)], regf)
    # three inside, two allowed: the two oldest must leave, the second oldest (30 h ago) decides
    assert v.retry_at == NOW - timedelta(hours=30) + timedelta(days=7)


def test_quiet_period_after_conversation() -> None:
    regf = PersonPolicy(max_calls_per_day=None, max_no_answer_days=None, quiet_days_after_conversation=7)
    v = check([ev(50, answered=True), ev(20, answered=True)], regf)
    assert not v.allowed and v.retry_at == NOW - timedelta(hours=20) + timedelta(days=7)
    assert check([ev(7 * 24 + 1, answered=True), ev(1)], regf).allowed


def test_several_blocks_report_all_and_wait_for_the_latest() -> None:
    policy = PersonPolicy(max_calls_per_day=1, max_no_answer_days=None, rolling_window_days=7,
                          max_calls_in_window=1)
    v = check([ev(1)], policy)
    assert v.retry_at == NOW - timedelta(hours=1) + timedelta(days=7)
    assert "today" in (v.reason or "") and "7 days" in (v.reason or "")


# --- property: if the caps allow a dial now, adding it breaks none of them ---------------------------

policies = st.builds(
    PersonPolicy,
    max_calls_per_day=st.none() | st.integers(1, 4),
    max_no_answer_days=st.none() | st.integers(1, 4),
    rolling_window_days=st.none() | st.integers(1, 10),
    max_calls_in_window=st.none() | st.integers(1, 7),
    quiet_days_after_conversation=st.none() | st.integers(1, 8),
)
events = st.lists(st.builds(
    lambda minutes, counted, answered: ContactEvent(NOW - timedelta(minutes=minutes), counted,
                                                    answered and counted, False),
    st.integers(0, 14 * 24 * 60), st.booleans(), st.booleans()), max_size=12)


@settings(max_examples=300, deadline=None)
@given(policies, events, st.sampled_from(["America/Santiago", "Asia/Kolkata", "UTC"]))
def test_an_allowed_dial_breaks_no_cap(policy: PersonPolicy, history: list[ContactEvent], zone: str) -> None:
    tz = ZoneInfo(zone)
    v = check_person_caps(history, policy, now=NOW, tz=tz)
    if not v.allowed:
        assert v.exclude or (v.retry_at is not None and v.retry_at > NOW)
        return
    after = [*history, ContactEvent(NOW, counted=True, answered=False, success=False)]
    counted = [e for e in after if e.counted]
    if policy.max_calls_per_day is not None:
        today = NOW.astimezone(tz).date()
        assert sum(e.at.astimezone(tz).date() == today for e in counted) <= policy.max_calls_per_day
    if policy.rolling_window_days is not None and policy.max_calls_in_window is not None:
        span = timedelta(days=policy.rolling_window_days)
        assert sum(e.at > NOW - span for e in counted) <= policy.max_calls_in_window
    if policy.quiet_days_after_conversation is not None:
        quiet = timedelta(days=policy.quiet_days_after_conversation)
        assert not any(e.answered and NOW - e.at < quiet for e in history)
    if policy.max_no_answer_days is not None:
        last_answer = max((e.at for e in history if e.answered), default=None)
        days = {e.at.astimezone(tz).date() for e in history
                if e.counted and (last_answer is None or e.at > last_answer)}
        assert len(days) < policy.max_no_answer_days


@settings(max_examples=200, deadline=None)
@given(policies, events)
def test_retry_at_is_allowed_when_nothing_new_happens(policy: PersonPolicy, history: list[ContactEvent]) -> None:
    v = check_person_caps(history, policy, now=NOW, tz=SCL)
    if v.allowed or v.exclude:
        return
    assert v.retry_at is not None
    later = check_person_caps(history, policy, now=v.retry_at, tz=SCL)
    assert later.allowed or later.exclude
