"""Pure cell normalisers: RUT, phones, amounts, dates, text. Each raises ``ValueError`` with a reason.

Cells arrive as whatever the reader produced: ``str`` from CSV; ``int``/``float``/``datetime``/``str``
from openpyxl. Numeric cells are turned into digits without going through ``str(float)``, which is how
``213731017`` used to become ``213731017.0`` and then a wrong RUT.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import phonenumbers
from stdnum.cl import rut as cl_rut
from stdnum.exceptions import ValidationError

_EXCEL_EPOCH = date(1899, 12, 30)
_SCI = re.compile(r"^[+-]?\d+(\.\d+)?[eE][+-]?\d+$")
# '213731017.0': a float cell written out as text (pandas, a CSV export); never thousands ('1.000').
_FLOAT_TEXT = re.compile(r"^(\d+)\.0{1,2}$")
_PHONE_SPLIT = re.compile(r"[/;,|]|\s+[yo]\s+")


def header_key(header: object) -> str:
    """Header identity without case, accents, spacing, punctuation: 'Teléfono móvil' -> 'telefonomovil'."""
    text = unicodedata.normalize("NFKD", str(header or ""))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]", "", text.lower())


def variable_name(header: str) -> str:
    """A readable agent-variable name for a header: 'Días de retraso' -> 'dias_de_retraso'."""
    text = unicodedata.normalize("NFKD", header)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_") or "column"


def is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def cell_text(value: object) -> str:
    """Text of a cell for messages and variables; integral floats lose their '.0'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return " ".join(str(value).split())


def _integral_digits(value: object) -> str | None:
    """Digits of a numeric cell (int, integral float, '213731017.0' or '2.13731017E8' text); None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if m := _FLOAT_TEXT.match(text):
            return m.group(1)
        if _SCI.match(text):
            d = Decimal(text)
            return str(int(d)) if d == d.to_integral_value() else None
    return None


def name_key(name: str) -> str:
    """A name without case, accents, punctuation or extra spaces: 'DÍAZ,  ana' == 'Diaz ana'."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def clean_name(value: object) -> str:
    name = cell_text(value)
    if not name or not any(c.isalpha() for c in name):
        raise ValueError("missing name")
    return name


def parse_rut(value: object) -> str:
    """Chilean RUT with a valid check digit, as '21373101-7' (uppercase 'K')."""
    if is_blank(value):
        raise ValueError("empty RUT")
    digits = _integral_digits(value)
    text = digits if digits is not None else str(value).strip()
    try:
        compact = cl_rut.validate(text)
    except ValidationError as exc:
        raise ValueError(f"invalid RUT ({exc})") from None
    return f"{compact[:-1].lstrip('0')}-{compact[-1].upper()}"


@dataclass(frozen=True)
class ParsedPhone:
    number: str  # E.164
    kind: str  # "mobile" | "landline"


def _kind(num: phonenumbers.PhoneNumber, region: str, hint: str) -> str:
    ntype = phonenumbers.number_type(num)
    if ntype == phonenumbers.PhoneNumberType.MOBILE:
        return "mobile"
    if ntype == phonenumbers.PhoneNumberType.FIXED_LINE:
        return "landline"
    # Chile's metadata gives FIXED_LINE_OR_MOBILE for every number; its mobiles are the 9xxxxxxxx range.
    if phonenumbers.region_code_for_number(num) == "CL":
        return "mobile" if str(num.national_number).startswith("9") else "landline"
    return hint


def parse_phone(text: str, region: str, hint: str = "mobile") -> ParsedPhone:
    """One phone to E.164. Tolerates spaces, dashes, dots, parentheses and a missing '+'."""
    raw = text.strip()
    digits = re.sub(r"\D", "", raw)
    if not digits:
        raise ValueError("not a phone number")
    candidates = [raw]
    if not raw.startswith("+"):
        candidates.append("+" + digits)  # '56984876639': country code written without '+'
    for candidate in candidates:
        try:
            num = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
            return ParsedPhone(e164, _kind(num, region, hint))
    raise ValueError("impossible phone number")


def phone_values(value: object) -> list[str]:
    """A phone cell as one or more texts ('991975219 / 221234567' holds two)."""
    if is_blank(value):
        return []
    digits = _integral_digits(value)
    if digits is not None:
        return [digits]
    return [part.strip() for part in _PHONE_SPLIT.split(str(value)) if part.strip()]


def parse_amount(value: object) -> Decimal:
    """A non-negative money amount: 125000, 125000.5, '$ 1.234.567', '1.234,50', '1,234.50'."""
    if is_blank(value):
        raise ValueError("empty amount")
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, int | float | Decimal):
        amount = Decimal(str(value))
    else:
        text = re.sub(r"[\s$€]|CLP|USD", "", str(value), flags=re.IGNORECASE)
        negative = text.startswith("-") or (text.startswith("(") and text.endswith(")"))
        text = text.strip("-()")
        if not re.fullmatch(r"[\d.,]+", text or "x"):
            raise ValueError(f"not an amount: {value!r}")
        text = _decimal_text(text)
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
        if negative:
            amount = -amount
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"amount must be zero or more, got {value!r}")
    return amount


def _decimal_text(text: str) -> str:
    """Decide which of '.'/',' is the decimal separator; Chile writes 1.234.567,50."""
    if "." in text and "," in text:
        dec = "." if text.rfind(".") > text.rfind(",") else ","
        thousands = "," if dec == "." else "."
        return text.replace(thousands, "").replace(dec, ".")
    for sep in ".,":
        if sep in text:
            parts = text.split(sep)
            # '1.234' and '1.234.567' are thousands; '1234.5' and '12.50' are decimals
            if len(parts) > 2 or len(parts[-1]) == 3:
                if not all(len(p) == 3 for p in parts[1:]):
                    raise ValueError(f"not an amount: {text!r}")
                return "".join(parts)
            return text.replace(sep, ".")
    return text


def format_amount(amount: Decimal) -> str:
    """'125000' for whole amounts (pesos have no cents), else two decimals."""
    if amount == amount.to_integral_value():
        return str(int(amount))
    return f"{amount:.2f}"


_DATE_PATTERNS = (
    (re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T].*)?$"), ("y", "m", "d")),
    (re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:[ T].*)?$"), ("d", "m", "y")),  # day first (Chile)
)


def parse_date(value: object) -> date:
    """A calendar date from a date cell, an Excel serial number, or ISO / day-first text."""
    if is_blank(value):
        raise ValueError("empty date")
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 1 <= value < 2958466:  # Excel serial days (a date column not formatted as a date)
            return _EXCEL_EPOCH + timedelta(days=int(value))
        raise ValueError(f"not a date: {value!r}")
    text = str(value).strip()
    if text.isdigit() and 20000 <= int(text) < 80000:
        return _EXCEL_EPOCH + timedelta(days=int(text))
    for pattern, order in _DATE_PATTERNS:
        m = pattern.match(text)
        if m:
            parts = dict(zip(order, (int(g) for g in m.groups()), strict=True))
            try:
                return date(parts["y"], parts["m"], parts["d"])
            except ValueError:
                break
    raise ValueError(f"not a date: {value!r}")


def parse_int(value: object) -> int:
    if is_blank(value):
        raise ValueError("empty number")
    digits = _integral_digits(value)
    text = digits if digits is not None else str(value).strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError(f"not a whole number: {value!r}")
    return int(text)
