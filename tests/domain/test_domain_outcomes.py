"""Every row of DESIGN.md's outcome table, the voicemail override, unknown reasons, callbacks."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from speechai.domain.outcomes import (
    Classification,
    OutcomeClass,
    callback_requested_at,
    classify_call,
    classify_http_status,
)

OC = OutcomeClass

# (reason, outcome, counts)
TABLE = [
    ("user_hangup", OC.CONVERSATION, True),
    ("agent_hangup", OC.CONVERSATION, True),
    ("call_transfer", OC.CONVERSATION, True),
    ("transfer_bridged", OC.CONVERSATION, True),
    ("transfer_cancelled", OC.CONVERSATION, True),
    ("max_duration_reached", OC.CONVERSATION, True),
    ("inactivity", OC.CONVERSATION, True),
    ("voicemail_reached", OC.VOICEMAIL, True),
    ("ivr_reached", OC.VOICEMAIL, True),
    ("dial_no_answer", OC.NO_ANSWER, True),
    ("dial_busy", OC.NO_ANSWER, True),
    ("user_declined", OC.NO_ANSWER, True),
    ("invalid_destination", OC.BAD_NUMBER, False),
    ("dial_failed", OC.BAD_NUMBER, False),
    ("marked_as_spam", OC.CALLER_ID, False),
    ("network_blocked", OC.CALLER_ID, False),
    ("telephony_provider_permission_denied", OC.BAD_NUMBER, False),
    ("concurrency_limit_reached", OC.CAPACITY, False),
    ("no_concurrency_fallback", OC.CAPACITY, False),
    ("no_valid_payment", OC.ACCOUNT, False),
    ("error_llm_websocket_open", OC.PROVIDER_ERROR, True),
    ("error_retell", OC.PROVIDER_ERROR, True),
    ("error_unknown", OC.PROVIDER_ERROR, True),
    ("telephony_provider_unavailable", OC.PROVIDER_ERROR, True),
    ("sip_routing_error", OC.PROVIDER_ERROR, True),
    ("registered_call_timeout", OC.PROVIDER_ERROR, True),
]


def _call(reason: str | None, *, successful: bool | None = None, in_voicemail: bool | None = None,
          status: str = "ended", **extra: object) -> dict[str, object]:
    call: dict[str, object] = {"call_id": "c1", "call_status": status, "disconnection_reason": reason}
    analysis = {k: v for k, v in (("call_successful", successful), ("in_voicemail", in_voicemail)) if v is not None}
    if analysis:
        call["call_analysis"] = analysis
    call.update(extra)
    return call


@pytest.mark.parametrize(("reason", "outcome", "counts"), TABLE)
def test_table_row_without_analysis(reason: str, outcome: OutcomeClass, counts: bool) -> None:
    c = classify_call(_call(reason))
    assert (c.outcome, c.counts, c.reason, c.success) == (outcome, counts, reason, False)
    assert c.answered == (outcome == OC.CONVERSATION)


@pytest.mark.parametrize(("reason", "outcome", "counts"), TABLE)
def test_analysis_success_only_makes_conversations_successful(reason: str, outcome: OutcomeClass,
                                                               counts: bool) -> None:
    c = classify_call(_call(reason, successful=True))
    assert c.outcome == outcome
    assert c.success == (outcome == OC.CONVERSATION)


@pytest.mark.parametrize("reason", [r for r, o, _ in TABLE if o == OC.CONVERSATION])
def test_voicemail_flag_overrides_conversation_reason(reason: str) -> None:
    c = classify_call(_call(reason, successful=True, in_voicemail=True))
    assert c == Classification(OC.VOICEMAIL, success=False, counts=True, answered=False, reason=reason)


def test_voicemail_flag_does_not_hide_a_bad_number_or_capacity() -> None:
    assert classify_call(_call("invalid_destination", in_voicemail=True)).outcome == OC.BAD_NUMBER
    assert classify_call(_call("concurrency_limit_reached", in_voicemail=True)).outcome == OC.CAPACITY


def test_declined_and_voicemail_never_success_even_with_rule() -> None:
    always = lambda call: True  # noqa: E731
    for reason in ("user_declined", "dial_busy", "voicemail_reached", "ivr_reached"):
        assert classify_call(_call(reason, successful=True), success_rule=always).success is False


def test_success_rule_decides_a_conversation() -> None:
    rule = lambda call: (call.get("collected_dynamic_variables") or {}).get("promise") == "yes"  # noqa: E731
    yes = _call("user_hangup", successful=False, collected_dynamic_variables={"promise": "yes"})
    no = _call("user_hangup", successful=False, collected_dynamic_variables={"promise": "no"})
    assert classify_call(yes, success_rule=rule).success is True
    assert classify_call(no, success_rule=rule).success is False
    assert classify_call(yes).success is False  # no rule, analysis says no


@pytest.mark.parametrize("reason", ["something_new", "error_brand_new_failure", ""])
def test_unknown_reasons_are_provider_errors_never_success(reason: str) -> None:
    c = classify_call(_call(reason or None, successful=True, status="error"))
    assert c.outcome == OC.PROVIDER_ERROR and c.success is False and c.counts is True


def test_missing_reason_names_the_status() -> None:
    assert classify_call({"call_status": "error"}).reason == "status_error"


def test_user_requested_dnc_is_an_unsuccessful_conversation_flagged_do_not_call() -> None:
    c = classify_call(_call("user_requested_dnc"))
    assert (c.outcome, c.success, c.do_not_call) == (OC.CONVERSATION, False, True)
    assert classify_call(_call("user_hangup")).do_not_call is False


def test_http_statuses() -> None:
    assert classify_http_status(402) == Classification(OC.ACCOUNT, False, False, False, "http_402")
    assert classify_http_status(429) == Classification(OC.CAPACITY, False, False, False, "http_429")
    for status in (200, 201, 400, 401, 422, 500):
        assert classify_http_status(status) is None


def test_callback_from_dynamic_variables_with_offset() -> None:
    call = _call("user_hangup", collected_dynamic_variables={"callback_at": "2026-03-02T10:30:00-03:00"})
    assert callback_requested_at(call) == datetime(2026, 3, 2, 13, 30, tzinfo=UTC)


def test_callback_from_custom_analysis_zulu_and_naive_local() -> None:
    call = _call("user_hangup", call_analysis={"custom_analysis_data": {"callback_time": "2026-03-02T10:30:00Z"}})
    assert callback_requested_at(call) == datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    naive = _call("user_hangup", collected_dynamic_variables={"callback_time": "2026-07-02 10:30"})
    assert callback_requested_at(naive, local_tz=ZoneInfo("America/Santiago")) == \
        datetime(2026, 7, 2, 14, 30, tzinfo=UTC)  # winter: UTC-4
    assert callback_requested_at(naive) == datetime(2026, 7, 2, 10, 30, tzinfo=UTC)


def test_callback_skips_garbage_and_absence() -> None:
    assert callback_requested_at(_call("user_hangup")) is None
    bad = _call("user_hangup", collected_dynamic_variables={"callback_at": "mañana", "callback_time": ""},
                call_analysis={"custom_analysis_data": {"callback_at": "2026-03-05"}})
    # unreadable dynamic variables fall through to the analysis; a bare date is local midnight
    assert callback_requested_at(bad) == datetime(2026, 3, 5, tzinfo=UTC)
