"""decide_next for every action, and refused dials as steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from speechai.domain.caps import CapVerdict
from speechai.domain.decision import NextStep, decide_next, step_for_caps
from speechai.domain.outcomes import Classification, classify_call, classify_http_status
from speechai.domain.settings import CallSettings
from speechai.domain.windows import is_dialable

SCL = ZoneInfo("America/Santiago")
S = CallSettings(allowed_hours=[{"start": "09:00", "end": "20:00"}], days_of_week=[1, 2, 3, 4, 5, 6],
                 holidays_country="CL", max_attempts=3)
TUESDAY_10 = datetime(2026, 3, 3, 10, 0, tzinfo=SCL).astimezone(UTC)


def decide(reason: str, *, successful: bool | None = None, attempts: int = 1, phones_after: int = 1,
           now: datetime = TUESDAY_10, callback_at: datetime | None = None,
           cls: Classification | None = None) -> NextStep:
    call = {"call_status": "ended", "disconnection_reason": reason, "call_analysis": {"call_successful": successful}}
    return decide_next(classification=cls or classify_call(call), settings=S, now=now, attempts_counted=attempts,
                       phones_usable_after=phones_after, callback_at=callback_at)


def local(at: datetime | None) -> datetime:
    assert at is not None
    return at.astimezone(SCL).replace(tzinfo=None)


def test_success_is_done() -> None:
    step = decide("user_hangup", successful=True, attempts=3)
    assert (step.action, step.next_try_at, step.mark_phone_bad) == ("done", None, False)


def test_no_answer_retries_after_its_delay_with_readable_reason() -> None:
    step = decide("dial_no_answer")
    assert step.action == "retry" and local(step.next_try_at) == datetime(2026, 3, 3, 11, 0)
    assert step.reason == "no answer (dial_no_answer); retry at 2026-03-03 11:00 -03"


def test_each_retry_class_uses_its_own_delay() -> None:
    assert local(decide("voicemail_reached").next_try_at) == datetime(2026, 3, 3, 12, 0)
    assert local(decide("error_retell").next_try_at) == datetime(2026, 3, 3, 10, 30)
    assert local(decide("user_hangup", successful=False).next_try_at) == datetime(2026, 3, 3, 14, 0)


def test_retry_pushed_into_the_next_window() -> None:
    late = datetime(2026, 3, 7, 19, 30, tzinfo=SCL).astimezone(UTC)  # Saturday; Sunday not allowed
    step = decide("dial_busy", now=late)
    assert local(step.next_try_at) == datetime(2026, 3, 9, 9, 0)
    assert is_dialable(S, step.next_try_at)  # type: ignore[arg-type]


def test_attempts_exhausted_fail() -> None:
    step = decide("dial_no_answer", attempts=3)
    assert step.action == "failed" and step.next_try_at is None and "3 of 3 attempts" in step.reason
    assert decide("dial_no_answer", attempts=2).action == "retry"


def test_callback_later_than_now_wins_and_is_pushed_to_a_window() -> None:
    cb = datetime(2026, 3, 3, 21, 0, tzinfo=SCL).astimezone(UTC)  # after hours
    step = decide("user_hangup", successful=False, callback_at=cb)
    assert local(step.next_try_at) == datetime(2026, 3, 4, 9, 0) and "callback requested" in step.reason
    soon = TUESDAY_10 + timedelta(minutes=15)  # earlier than the conversation delay: the person asked
    assert decide("user_hangup", successful=False, callback_at=soon).next_try_at == soon
    past = TUESDAY_10 - timedelta(hours=1)
    assert local(decide("dial_no_answer", callback_at=past).next_try_at) == datetime(2026, 3, 3, 11, 0)


def test_bad_number_moves_to_next_phone_at_once() -> None:
    step = decide("invalid_destination", attempts=5, phones_after=1)
    assert (step.action, step.next_try_at, step.mark_phone_bad) == ("next_phone", TUESDAY_10, True)


def test_bad_number_without_phones_left_fails() -> None:
    step = decide("dial_failed", phones_after=0)
    assert (step.action, step.mark_phone_bad) == ("failed", True) and "all phones bad" in step.reason


def test_capacity_backs_off_without_failing() -> None:
    step = decide("x", cls=classify_http_status(429), attempts=99)
    assert step.action == "backoff" and step.next_try_at == TUESDAY_10 + timedelta(minutes=2)
    assert decide("concurrency_limit_reached", attempts=99).action == "backoff"


def test_account_suspends() -> None:
    assert decide("x", cls=classify_http_status(402)).action == "suspended"
    step = decide("no_valid_payment")
    assert (step.action, step.next_try_at) == ("suspended", None)


def test_do_not_call_request_excludes() -> None:
    assert decide("user_requested_dnc").action == "excluded"


def test_cap_verdicts_as_steps() -> None:
    assert step_for_caps(CapVerdict(True, None, None, False), S, TUESDAY_10) is None
    ex = step_for_caps(CapVerdict(False, "on the do-not-call list", None, True), S, TUESDAY_10)
    assert ex is not None and (ex.action, ex.reason) == ("excluded", "on the do-not-call list")
    midnight = datetime(2026, 3, 4, 0, 0, tzinfo=SCL).astimezone(UTC)
    later = step_for_caps(CapVerdict(False, "3 calls today", midnight, False), S, TUESDAY_10)
    assert later is not None and later.action == "retry" and local(later.next_try_at) == datetime(2026, 3, 4, 9)


def test_a_flagged_caller_id_retries_the_person_and_never_marks_their_phone_bad() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from speechai.domain.decision import decide_next
    from speechai.domain.outcomes import OutcomeClass, classify_call
    from speechai.domain.settings import CallSettings

    now = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/Santiago"))
    for reason in ("marked_as_spam", "network_blocked"):
        c = classify_call({"call_status": "not_connected", "disconnection_reason": reason})
        assert c.outcome == OutcomeClass.CALLER_ID and not c.counts
        # even with every attempt used and no other phone, the person is not failed
        step = decide_next(classification=c, settings=CallSettings(max_attempts=1), now=now,
                           attempts_counted=5, phones_usable_after=0)
        assert step.action == "backoff" and not step.mark_phone_bad
        assert step.next_try_at is not None and step.next_try_at >= now
