from datetime import date, datetime
from decimal import Decimal

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechai.loader.normalize import (
    header_key,
    parse_amount,
    parse_date,
    parse_phone,
    parse_rut,
    phone_values,
    variable_name,
)


@pytest.mark.parametrize("cell", [213731017, 213731017.0, "213731017", "21.373.101-7", "21373101-7",
                                  " 21373101 - 7 ", "2.13731017E8"])
def test_rut_spellings_normalise_to_one_form(cell: object) -> None:
    assert parse_rut(cell) == "21373101-7"


@pytest.mark.parametrize("cell", ["12345670k", "12.345.670-K", "12345670-k"])
def test_rut_with_k_check_digit(cell: str) -> None:
    assert parse_rut(cell) == "12345670-K"


@pytest.mark.parametrize("cell", [213731018, "21373101-0", "abc", "", None, 12.5, "12345670-1"])
def test_rut_invalid_or_wrong_check_digit(cell: object) -> None:
    with pytest.raises(ValueError):
        parse_rut(cell)


def test_float_rut_cell_never_gains_a_zero() -> None:
    # The earlier system read 213731017.0 as '2137310170': check digit lost, RUT wrong.
    assert parse_rut(float(213731017)).replace("-", "") == "213731017"


@pytest.mark.parametrize("text,e164,kind", [
    ("991975219", "+56991975219", "mobile"),
    ("56984876639", "+56984876639", "mobile"),
    ("+56 9 9197-5219", "+56991975219", "mobile"),
    ("9 9197 5219", "+56991975219", "mobile"),
    ("(9) 9197-5219", "+56991975219", "mobile"),
    ("221234567", "+56221234567", "landline"),
    ("32 212 3456", "+56322123456", "landline"),
])
def test_phones_to_e164_with_kind(text: str, e164: str, kind: str) -> None:
    p = parse_phone(text, "CL")
    assert (p.number, p.kind) == (e164, kind)


@pytest.mark.parametrize("text", ["99197521", "9919752", "12", "hola", "000000000", "5699197521"])
def test_impossible_phones_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_phone(text, "CL")


def test_phone_region_from_config() -> None:
    assert parse_phone("(415) 555-2671", "US").number == "+14155552671"


def test_phone_cells_numeric_and_multi() -> None:
    assert phone_values(991975219) == ["991975219"]
    assert phone_values(991975219.0) == ["991975219"]
    assert phone_values("991975219 / 221234567") == ["991975219", "221234567"]
    assert phone_values("  ") == []


@pytest.mark.parametrize("cell,expected", [
    (125000, Decimal("125000")), (125000.5, Decimal("125000.5")), ("$ 1.234.567", Decimal("1234567")),
    ("1.234,50", Decimal("1234.50")), ("1,234.50", Decimal("1234.50")), ("12.50", Decimal("12.50")),
    ("0", Decimal("0")), ("CLP 45.000", Decimal("45000")),
])
def test_amounts(cell: object, expected: Decimal) -> None:
    assert parse_amount(cell) == expected


@pytest.mark.parametrize("cell", ["", None, "abc", "-500", -1, "1.23.4", "12,34,5"])
def test_bad_amounts(cell: object) -> None:
    with pytest.raises(ValueError):
        parse_amount(cell)


@pytest.mark.parametrize("cell,expected", [
    (datetime(2025, 12, 31, 0, 0), date(2025, 12, 31)), (date(2025, 12, 31), date(2025, 12, 31)),
    ("2025-12-31", date(2025, 12, 31)), ("31/12/2025", date(2025, 12, 31)), ("31-12-2025", date(2025, 12, 31)),
    ("05.01.2026", date(2026, 1, 5)), (46022, date(2025, 12, 31)), ("46022", date(2025, 12, 31)),
])
def test_dates(cell: object, expected: date) -> None:
    assert parse_date(cell) == expected


@pytest.mark.parametrize("cell", ["31/02/2025", "mañana", "2025-13-01", "12/2025"])
def test_bad_dates(cell: object) -> None:
    with pytest.raises(ValueError):
        parse_date(cell)


def test_header_key_ignores_case_accents_spacing_punctuation() -> None:
    assert header_key("Teléfono móvil") == header_key("TELEFONO_MOVIL") == header_key(" telefono-movil ")
    assert header_key("Días de retraso") == "diasderetraso"
    assert variable_name("Días de retraso") == "dias_de_retraso"


@given(st.sampled_from(["56", "1", "7", "44", "34", "54", "800", "882"]),
       st.text(alphabet="0123456789", min_size=4, max_size=12))
def test_a_phone_is_accepted_exactly_when_phonenumbers_calls_it_valid(cc: str, rest: str) -> None:

    try:
        num = phonenumbers.parse(f"+{cc}{rest}", "CL")
    except phonenumbers.NumberParseException:
        return
    try:
        parse_phone(f"+{cc}{rest}", "CL")
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == phonenumbers.is_valid_number(num)


_SEPARATORS = st.sampled_from(["", " ", "-", ".", "(", ")", "  "])


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(["", "+", "56", "+56", "+56 ", "56 ", "0", "+1", "00", "+800", "+5", "+569", "9", "2"]),
       st.lists(st.tuples(st.text(alphabet="0123456789", min_size=1, max_size=4), _SEPARATORS), min_size=1,
                max_size=5),
       st.sampled_from(["mobile", "landline"]))
def test_the_chilean_fast_path_gives_what_the_general_parser_gives(prefix: str, parts, hint: str) -> None:
    from speechai.loader.normalize import _parse_general

    text = prefix + "".join(d + sep for d, sep in parts)
    raw = text.strip()
    digits = "".join(c for c in raw if c.isdigit())
    if not digits:
        return
    try:
        expected = _parse_general(raw, digits, "CL", hint)
    except ValueError:
        expected = None
    try:
        got = parse_phone(text, "CL", hint)
    except ValueError:
        got = None
    assert got == expected, text


def test_a_plus_means_the_country_code_follows() -> None:
    assert parse_phone("+800 0000 0000", "CL").number == "+80000000000"  # international freephone, not +56
    assert parse_phone("800000000", "CL").number == "+56800000000"  # a Chilean 800 number
    assert parse_phone("+56 9 6123 4567", "CL") == parse_phone("961234567", "CL") == parse_phone("56961234567", "CL")
