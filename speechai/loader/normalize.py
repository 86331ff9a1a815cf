"""Pure cell normalisers: RUT, phones, amounts, dates, text. Each raises ``ValueError`` with a reason.

Cells arrive as whatever the reader produced: ``str`` from CSV; ``int``/``float``/``datetime``/``str``
from openpyxl. Numeric cells are turned into digits without going through ``str(float)``, which is how
``213731017`` used to become ``213731017.0`` and then a wrong RUT.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

import phonenumbers
from stdnum.cl import rut as cl_rut
from stdnum.exceptions import ValidationError

from speechai.domain.zones import zones_of_parsed

_EXCEL_EPOCH = date(1899, 12, 30)
_SCI = re.compile(r"^[+-]?\d+(\.\d+)?[eE][+-]?\d+$")
# '213731017.0': a float cell written out as text (pandas, a CSV export); never thousands ('1.000').
_FLOAT_TEXT = re.compile(r"^(\d+)\.0{1,2}$")
_PHONE_SPLIT = re.compile(r"[/;,|]|\s+[yo]\s+")
_NOT_WORD = re.compile(r"[^\w]+")
_NOT_DIGIT = re.compile(r"\D")
_CL_PLAIN = re.compile(r"\+?[\d\s().-]+")  # digits and the separators people type, nothing else
_CURRENCY = re.compile(r"[\s$€]|CLP|USD", re.IGNORECASE)
_AMOUNT_TEXT = re.compile(r"[\d.,]+")


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


@functools.lru_cache(maxsize=65536)  # a person's name repeats on each of their instalment rows
def name_key(name: str) -> str:
    """A name without case, accents, punctuation or extra spaces: 'DÍAZ,  ana' == 'Diaz ana'."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(_NOT_WORD.sub(" ", text).split())


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
    zones: tuple[str, ...] = ()  # possible IANA zones (domain.zones); empty: unknown


def _kind(num: phonenumbers.PhoneNumber, region: str, hint: str, ntype: int) -> str:
    if ntype == phonenumbers.PhoneNumberType.MOBILE:
        return "mobile"
    if ntype == phonenumbers.PhoneNumberType.FIXED_LINE:
        return "landline"
    # Chile's metadata gives FIXED_LINE_OR_MOBILE for every number; its mobiles are the 9xxxxxxxx range.
    if num.country_code == 56:  # (+56 is Chile's alone)
        return "mobile" if str(num.national_number).startswith("9") else "landline"
    return hint


def _chile_fast(raw: str, digits: str, hint: str) -> ParsedPhone | None:
    """The common Chilean spellings ('9 8487 6639', '+56 9 8487-6639', '56984876639') without the
    library's general parser, the slowest part of a load; None when the number is not such a valid one
    (the general path then decides, so results never differ: tests/loader/test_loader_normalize.py)."""
    if not _CL_PLAIN.fullmatch(raw):
        return None
    if len(digits) == 11 and digits.startswith("56"):
        digits = digits[2:]
    elif raw.startswith("+"):
        return None  # '+800 …' is another country's (or no country's) number
    if len(digits) != 9 or digits[0] == "0":
        return None
    num = phonenumbers.PhoneNumber(country_code=56, national_number=int(digits))
    ntype = phonenumbers.number_type(num)
    if ntype == phonenumbers.PhoneNumberType.UNKNOWN:  # for +56 nine-digit numbers: is_valid_number
        return None
    return ParsedPhone(f"+56{digits}", _kind(num, "CL", hint, ntype), zones_of_parsed(num, ntype))


def parse_phone(text: str, region: str, hint: str = "mobile") -> ParsedPhone:
    """One phone to E.164. Tolerates spaces, dashes, dots, parentheses and a missing '+'."""
    raw = text.strip()
    digits = _NOT_DIGIT.sub("", raw)
    if not digits:
        raise ValueError("not a phone number")
    if region == "CL" and (fast := _chile_fast(raw, digits, hint)) is not None:
        return fast
    return _parse_general(raw, digits, region, hint)


def _parse_general(raw: str, digits: str, region: str, hint: str) -> ParsedPhone:
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
            ntype = phonenumbers.number_type(num)  # slow (metadata regexes): computed once for both uses
            return ParsedPhone(e164, _kind(num, region, hint, ntype), zones_of_parsed(num, ntype))
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
        text = _CURRENCY.sub("", str(value))
        negative = text.startswith("-") or (text.startswith("(") and text.endswith(")"))
        text = text.strip("-()")
        if not _AMOUNT_TEXT.fullmatch(text or "x"):
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


_TIME_TEXT = re.compile(r"^(\d{1,2})(?:[:.hH](\d{2}))?(?::(\d{2}))?\s*(hrs?|h)?\.?\s*([aApP]\.?\s*[mM]\.?)?$")


def parse_time(value: object) -> time:
    """A time of day from a time cell, an Excel day fraction (0.4375) or text ('10:30', '10.30 hrs', '9h',
    '10:30:00', '2:30 PM'); a bare number ('10') is refused as ambiguous, a date and time as not a time."""
    if is_blank(value):
        raise ValueError("empty time")
    if isinstance(value, datetime):
        if value.date() in (_EXCEL_EPOCH, date(1900, 1, 1)):  # a bare time some readers put on Excel's day 0
            return value.time().replace(microsecond=0)
        raise ValueError(f"not a time of day: {value!r} is a date and time")
    if isinstance(value, time):
        return value.replace(microsecond=0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if 0 <= value < 1:  # Excel stores a time as a fraction of a day
            seconds = round(value * 86400)
            return time(seconds // 3600 % 24, seconds // 60 % 60, seconds % 60)
        raise ValueError(f"not a time of day: {value!r}")
    m = _TIME_TEXT.match(str(value).strip())
    if m:
        hour, minute, second = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
        meridiem = (m.group(5) or "").lower().replace(".", "").replace(" ", "")
        if meridiem and not 1 <= hour <= 12:
            raise ValueError(f"not a time of day: {value!r} (hour {hour} with {meridiem.upper()})")
        if meridiem:
            hour = hour % 12 + (12 if meridiem == "pm" else 0)
        if hour < 24 and minute < 60 and second < 60 and (m.group(2) or m.group(4) or meridiem):
            return time(hour, minute, second)
    raise ValueError(f"not a time of day: {value!r}")


def format_time(value: time) -> str:
    return value.strftime("%H:%M" if value.second == 0 else "%H:%M:%S")


_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}$")
MAX_EMAIL_CHARS = 254  # RFC 5321's limit on a forward path


def parse_email(value: object) -> str:
    """An address as 'local@domain.tld', the domain lowercased; refuses spaces, two '@', no dot in the domain."""
    text = cell_text(value)
    if not text:
        raise ValueError("empty email")
    if len(text) > MAX_EMAIL_CHARS:
        raise ValueError(f"email is {len(text)} characters; the limit is {MAX_EMAIL_CHARS}")
    if not _EMAIL.match(text) or ".." in text:
        raise ValueError(f"not an email address: {text!r}")
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


MIN_AGE, MAX_AGE = 0, 120


def parse_age(value: object) -> int:
    """Age in whole years, MIN_AGE to MAX_AGE; '35 años' and 35.0 are 35, 35.5 and 'treinta' are refused."""
    text = cell_text(value)
    text = re.sub(r"\s*(años|anos|years|yrs|a)\.?$", "", text, flags=re.IGNORECASE)
    try:
        age = parse_int(text if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"age must be a whole number, got {cell_text(value)!r}") from None
    if not MIN_AGE <= age <= MAX_AGE:
        raise ValueError(f"age must be {MIN_AGE} to {MAX_AGE}, got {age}")
    return age
