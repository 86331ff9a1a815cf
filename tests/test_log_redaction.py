"""Personal data never reaches a log line in clear: the pure masking functions, and the real
structlog pipeline writing JSON lines to a file."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from speechai.logs import configure_logging, mask_phone, mask_rut, redact_text, redact_value

# Text around the personal data: anything but digits and the characters that start or join a phone,
# RUT or e-mail address, so the surroundings cannot extend what is masked.
SURROUNDING = st.text(st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="+-.@_"), max_size=30)
# Text with no "+", no "-" and no "@" holds no E.164 phone, RUT or e-mail address: digits are allowed.
NON_PII = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="+-@"), max_size=80)


def rut_check_digit(body: int) -> str:
    total, factor = 0, 2
    for digit in reversed(str(body)):
        total += int(digit) * factor
        factor = 2 if factor == 7 else factor + 1
    check = 11 - total % 11
    return {10: "K", 11: "0"}.get(check, str(check))


@st.composite
def phones(draw: st.DrawFn) -> str:
    """An E.164 number, compact or spaced as people type it."""
    digits = draw(st.text("0123456789", min_size=8, max_size=15).filter(lambda d: d[0] != "0"))
    if draw(st.booleans()):
        return "+" + digits
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=3)))
    parts = [digits[a:b] for a, b in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    return "+" + " ".join(parts)


@st.composite
def ruts(draw: st.DrawFn) -> str:
    body = draw(st.integers(1_000_000, 99_999_999))
    text = f"{body:,}".replace(",", ".") if draw(st.booleans()) else str(body)
    check = rut_check_digit(body)
    return f"{text}-{check.lower() if draw(st.booleans()) else check}"


def digits_of(text: str) -> str:
    return re.sub(r"\D", "", text)


def test_examples() -> None:
    assert mask_phone("+56987654321") == "+56*****4321"
    assert mask_rut("21373101-7") == "21.***.***-7"
    assert mask_rut("9.876.543-k") == "9.***.***-K"
    assert redact_text("no answer from +56987654321, RUT 21.373.101-7") == \
        "no answer from +56*****4321, RUT 21.***.***-7"
    assert redact_text("write to maria.gonzalez@example.cl") == "write to m***@example.cl"


def test_event_fields_and_nested_values() -> None:
    event = {
        "event": "call_placed", "call_id": "call_8f2e", "phone": "+56987654321", "from_number": "+56229000000",
        "to_number": 56912345678, "name": "María José González", "rut": "213731017", "key": "21373101-7",
        "row": {"nombre": "Juan", "telefonos": ["+56911112222", "+56933334444"], "attempts": 3},
        "exception": "Traceback …\nValueError: bad phone '+56955556666' for 12.345.678-5",
    }
    out = redact_value(event)
    assert out["phone"] == "+56*****4321"
    assert out["from_number"] == "+56229000000"  # the campaign's own caller id
    assert out["to_number"] == "*********78"  # not text, but under a personal key: masked anyway
    assert out["name"] == "M*** J*** G***"
    assert out["rut"] == "*******17"  # no dash: not recognisable as a RUT, masked as an opaque value
    assert out["key"] == "21.***.***-7"
    assert out["row"] == {"nombre": "J***", "telefonos": ["+56*****2222", "+56*****4444"], "attempts": 3}
    assert "+56955556666" not in out["exception"] and "12.345.678" not in out["exception"]
    assert out["event"] == "call_placed" and out["call_id"] == "call_8f2e"
    assert event["phone"] == "+56987654321"  # the caller's dict is not modified


@given(phone=phones(), before=SURROUNDING, after=SURROUNDING)
def test_no_phone_survives(phone: str, before: str, after: str) -> None:
    out = redact_text(f"{before} {phone} {after}")
    digits = digits_of(phone)
    assert phone not in out
    assert digits not in digits_of(out)
    assert len(digits_of(out)) <= len(digits) // 2 + 1  # more than half of the digits are hidden


@given(rut=ruts(), before=SURROUNDING, after=SURROUNDING)
def test_no_rut_survives(rut: str, before: str, after: str) -> None:
    out = redact_text(f"{before} {rut} {after}")
    body = digits_of(rut.split("-")[0])
    assert rut not in out
    assert body not in digits_of(out)
    assert len(digits_of(out.replace(f"-{rut[-1]}", ""))) <= 2


@given(text=NON_PII)
def test_text_without_personal_data_is_unchanged(text: str) -> None:
    assert redact_text(text) == text
    assert redact_value({"event": text, "n": 3, "nested": [text, {"msg": text}]}) == \
        {"event": text, "n": 3, "nested": [text, {"msg": text}]}


@given(phone=phones(), rut=ruts())
def test_nothing_survives_anywhere_in_an_event(phone: str, rut: str) -> None:
    event = {"event": f"dial {phone}", "detail": {"who": [f"rut {rut}"], "phone": phone}, "rut": rut}
    rendered = json.dumps(redact_value(event), ensure_ascii=False)
    assert digits_of(phone) not in digits_of(rendered)
    assert digits_of(rut.split("-")[0]) not in digits_of(rendered)


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


def test_configure_logging_writes_masked_json_lines(tmp_path: Path, restore_structlog: None) -> None:
    path = tmp_path / "speechai.log"
    configure_logging("info", "json", path)
    log = structlog.get_logger("speechai").bind(job_id="665f1c")
    log.info("call_placed", call_id="call_1", phone="+56987654321", from_number="+56229000000")
    log.warning("row_rejected", row={"rut": "21373101-7", "phones": ["+56911112222"], "name": "Ana Pérez"})
    try:
        raise ValueError("do-not-call lookup failed for 12.345.678-5 / +56933334444")
    except ValueError:
        log.exception("gate_failed")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["event"] for line in lines] == ["call_placed", "row_rejected", "gate_failed"]
    assert lines[0]["phone"] == "+56*****4321" and lines[0]["from_number"] == "+56229000000"
    assert lines[0]["job_id"] == "665f1c" and lines[0]["level"] == "info"
    assert lines[1]["row"] == {"rut": "21.***.***-7", "phones": ["+56*****2222"], "name": "A*** P***"}
    assert "ValueError" in lines[2]["exception"] and "12.***.***-5" in lines[2]["exception"]
    text = path.read_text(encoding="utf-8")
    for secret in ("56987654321", "21373101", "56911112222", "Ana Pérez", "12.345.678", "56933334444"):
        assert secret not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_debug_level_is_masked_too(tmp_path: Path, restore_structlog: None) -> None:
    path = tmp_path / "debug.log"
    configure_logging("debug", "console", path)
    structlog.get_logger().debug("retell_request", to_number="+56987654321")
    text = path.read_text(encoding="utf-8")
    assert "retell_request" in text and "+56*****4321" in text and "56987654321" not in text
