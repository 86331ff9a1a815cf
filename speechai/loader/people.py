"""Rows to people: validate each row, group rows per person, and compute what the agent is told.

Pure: takes rows already read and returns people and errors. Memory grows with the number of people
(one small aggregate each), not with the number of rows or columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal
from enum import StrEnum

from speechai.domain.zones import parse_zone, zone_mix
from speechai.loader.columns import SURVEY_FIELDS, ColumnMap
from speechai.loader.errors import Reason, RowError
from speechai.loader.limits import MAX_FIELD_CHARS
from speechai.loader.normalize import (
    ParsedPhone,
    cell_text,
    clean_name,
    format_amount,
    format_time,
    header_key,
    is_blank,
    name_key,
    parse_age,
    parse_amount,
    parse_date,
    parse_email,
    parse_int,
    parse_phone,
    parse_rut,
    parse_time,
    phone_values,
)


class FormatReason(StrEnum):
    """Row problems of the marketing, reminder and survey formats (beside ``errors.Reason``)."""

    BAD_EMAIL = "bad_email"
    BAD_AGE = "bad_age"  # not a whole number, or outside MIN_AGE..MAX_AGE
    BAD_TIME = "bad_time"  # the appointment time is not a time of day
    MISSING_SURVEY = "missing_survey"  # neither a survey id nor a topic on the row
    APPOINTMENT_CONFLICT = "appointment_conflict"  # one person (RUT or phone) with two appointments


class ZoneReason(StrEnum):
    """Load warnings about the debtor's local time (domain/zones.py)."""

    INVALID_TIMEZONE = "invalid_timezone"  # the timezone cell is not an IANA name: the number's zones apply
    MIXED_TIME_ZONES = "mixed_time_zones"  # people of the batch are in different zones


ZONE_HEADERS = frozenset({"timezone", "zonahoraria", "husohorario"})  # header keys of a zone column
PROGRESS_EVERY = 1000
_MEMO_MAX = 4096
_SHOWN_CHARS = 60  # of an over-long value, in errors and the report


class _Memo:
    """Bounded memo for pure cell parsers: a person's instalment rows repeat the same RUT and phones."""

    def __init__(self) -> None:
        self._data: dict[tuple[object, ...], object] = {}

    def get(self, key: tuple[object, ...], fn: Callable[[], object]) -> object:
        try:
            hit = self._data[key]
        except KeyError:
            try:
                hit = fn()
            except ValueError as exc:
                hit = exc
            if len(self._data) >= _MEMO_MAX:
                self._data.clear()
            self._data[key] = hit
        if isinstance(hit, ValueError):
            raise hit
        return hit


@dataclass
class Person:
    key: str  # normalised RUT, else E.164 phone
    name: str
    national_id: str | None
    first_row: int
    name_row: int = 0  # the row the name was taken from
    rows: list[int] = field(default_factory=list)
    phones: dict[str, str] = field(default_factory=dict)  # E.164 -> kind, in order of appearance
    phone_zones: dict[str, tuple[str, ...]] = field(default_factory=dict)  # E.164 -> zones of the number
    zone: str | None = None  # a loaded timezone column: overrides every phone's own zones
    instalments: int = 0
    total: Decimal = Decimal(0)
    first_due: date | None = None
    last_due: date | None = None
    days_late: int | None = None
    appointment: tuple[date, time] | None = None  # reminder format
    appointment_row: int = 0
    info: dict[str, str] = field(default_factory=dict)  # first non-empty value per variable
    rejected: bool = False
    name_conflict: bool = False  # the name row has been reported as conflicting

    def ordered_phones(self) -> list[ParsedPhone]:
        """Mobiles first, then landlines; within a kind, the order they appeared in the file."""
        items = [ParsedPhone(n, k, (self.zone,) if self.zone else self.phone_zones.get(n, ()))
                 for n, k in self.phones.items()]
        return sorted(items, key=lambda p: p.kind != "mobile")

    def variables(self, fmt: str) -> dict[str, str]:
        out = {"name": self.name}
        if self.national_id:
            out["rut"] = self.national_id
        if fmt == "collection":
            out["total_debt"] = format_amount(self.total)
            out["instalments"] = str(self.instalments)
            if self.first_due:
                out["first_due_date"] = self.first_due.isoformat()
            if self.last_due:
                out["last_due_date"] = self.last_due.isoformat()
            if self.days_late is not None:
                out["days_late"] = str(self.days_late)
        if self.appointment is not None:
            out["appointment_date"] = self.appointment[0].isoformat()
            out["appointment_time"] = format_time(self.appointment[1])
        for k, v in self.info.items():
            out.setdefault(k, v)
        return out


@dataclass
class ParseResult:
    columns: ColumnMap
    rows: int = 0
    people: dict[str, Person] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    zone_column: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        keys = [header_key(h) for h in self.columns.headers]
        self.zone_column = next((i for i, k in enumerate(keys) if k in ZONE_HEADERS), None)

    def reject_tainted_people(self) -> None:
        """Drop people with a rejected row; their other rows are reported so nothing vanishes silently."""
        rejected_rows = {e.row for e in self.errors}
        for key in [k for k, p in self.people.items() if p.rejected]:
            person = self.people.pop(key)
            for row in person.rows:
                if row not in rejected_rows:
                    self.errors.append(RowError(row, "", person.key, Reason.PERSON_REJECTED,
                                                "another row of this person was rejected"))
        self.errors.sort(key=lambda e: e.row)


def parse_rows(rows: Iterable[tuple[int, tuple[object, ...]]], columns: ColumnMap, region: str,
               progress: Callable[[int], None] | None = None, max_field_chars: int = MAX_FIELD_CHARS,
               ) -> ParseResult:
    result = ParseResult(columns)
    memo = _Memo()
    used = columns.used()
    for row_no, values in rows:
        if all(is_blank(v) for v in values):
            continue
        result.rows += 1
        too_long = _too_long(columns, used, row_no, values, max_field_chars)
        if too_long:
            # Reported once each and not parsed: their content never reaches a job or the agent.
            result.errors.extend(too_long.values())
            values = tuple(None if i in too_long else v for i, v in enumerate(values))
        _parse_row(result, row_no, values, region, memo, cut=set(too_long))
        if progress is not None and result.rows % PROGRESS_EVERY == 0:
            progress(result.rows)
    if progress is not None:
        progress(result.rows)
    _check_people_phones(result)
    result.errors.sort(key=lambda e: e.row)
    return result


def _cell(values: tuple[object, ...], index: int | None) -> object:
    return values[index] if index is not None and index < len(values) else None


def _too_long(cols: ColumnMap, used: list[int], row_no: int, values: tuple[object, ...],
              limit: int) -> dict[int, RowError]:
    """The used cells of a row over the length limit, by column index."""
    errors: dict[int, RowError] = {}
    n = len(values)
    for i in used:
        value = values[i] if i < n else None
        if type(value) is str and len(value) > limit:
            errors[i] = RowError(row_no, cols.header(i), value[:_SHOWN_CHARS] + "…", Reason.TOO_LONG,
                                 f"{len(value):,} characters; the limit is {limit:,} per field")
    return errors


def _parse_row(result: ParseResult, row_no: int, values: tuple[object, ...], region: str,
               memo: _Memo, cut: set[int] | None = None) -> None:
    """``cut``: columns blanked for being too long (already reported): not reported again as missing,
    and the row still marks its person as rejected."""
    cols = result.columns
    fields = cols.fields
    errors: list[RowError] = []
    rejected = bool(cut)

    def fail(fname: str, reason: StrEnum, exc: Exception) -> None:
        idx = fields.get(fname)
        if cut and idx in cut:
            return
        errors.append(RowError(row_no, cols.header(idx) if idx is not None else fname,
                               cell_text(_cell(values, idx)), reason, str(exc)))  # type: ignore[arg-type]

    rut: str | None = None
    rut_cell = _cell(values, fields.get("rut"))
    if cols.format == "collection" or not is_blank(rut_cell):
        try:
            rut = memo.get(("rut", type(rut_cell), rut_cell), lambda: parse_rut(rut_cell))  # type: ignore[assignment]
        except ValueError as exc:
            fail("rut", Reason.INVALID_RUT, exc)
    try:
        name = clean_name(_cell(values, fields.get("name")))
    except ValueError as exc:
        name = ""
        fail("name", Reason.MISSING_NAME, exc)
    amount = due = None
    if cols.format == "collection":
        try:
            amount = parse_amount(_cell(values, fields.get("amount")))
        except ValueError as exc:
            fail("amount", Reason.BAD_AMOUNT, exc)
        due_cell = _cell(values, fields.get("due_date"))
        if not is_blank(due_cell):
            try:
                due = parse_date(due_cell)
            except ValueError as exc:
                fail("due_date", Reason.BAD_DATE, exc)
    phones: list[ParsedPhone] = []
    for idx, hint in cols.phones:
        for text in phone_values(_cell(values, idx)):
            try:
                phones.append(memo.get((text, hint), lambda t=text, h=hint: parse_phone(t, region, h)))  # type: ignore[arg-type]
            except ValueError as exc:
                result.warnings.append(
                    RowError(row_no, cols.header(idx), text, Reason.INVALID_PHONE, str(exc)))
    checked, appointment = _format_fields(cols, row_no, values, fail, errors, cut or set())
    if cols.format != "collection" and not phones and not (cut and any(i in cut for i, _ in cols.phones)):
        # Outside collection a row is a person: without a phone there is no one to call.
        errors.append(_no_phone(result, row_no, values))
    key = rut or (phones[0].number if phones else None)
    if key is None:
        result.errors.extend(errors)
        return
    person = result.people.get(key)
    if person is None:
        person = result.people[key] = Person(key=key, name=name, national_id=rut, first_row=row_no,
                                             name_row=row_no)
    person.rows.append(row_no)
    if name and person.name and name_key(name) != name_key(person.name):
        errors.extend(_name_conflict(person, cols, row_no, name))
    if appointment is not None and person.appointment is not None and person.appointment != appointment:
        errors.append(_appointment_conflict(person, cols, row_no, person.appointment, appointment))
    if errors or rejected:
        result.errors.extend(errors)
        person.rejected = True
        return
    if not person.name:
        person.name, person.name_row = name, row_no
    for p in phones:
        person.phones.setdefault(p.number, p.kind)
        person.phone_zones.setdefault(p.number, p.zones)
    if amount is not None:
        person.instalments += 1
        person.total += amount
    if due is not None:
        person.first_due = min(person.first_due or due, due)
        person.last_due = max(person.last_due or due, due)
    if appointment is not None and person.appointment is None:
        person.appointment, person.appointment_row = appointment, row_no
    for k, v in checked.items():
        person.info.setdefault(k, v)
    _collect_info(person, result, row_no, values)


def _format_fields(cols: ColumnMap, row_no: int, values: tuple[object, ...],
                   fail: Callable[[str, StrEnum, Exception], None], errors: list[RowError], cut: set[int],
                   ) -> tuple[dict[str, str], tuple[date, time] | None]:
    """The marketing, reminder and survey checks: the row's validated variables and its appointment."""
    fields = cols.fields
    checked: dict[str, str] = {}
    appointment = None
    if cols.format == "marketing":
        for fname, parse, reason in (("email", parse_email, FormatReason.BAD_EMAIL),
                                     ("age", parse_age, FormatReason.BAD_AGE)):
            cell = _cell(values, fields.get(fname))
            if not is_blank(cell):
                try:
                    checked[fname] = str(parse(cell))
                except ValueError as exc:
                    fail(fname, reason, exc)
    elif cols.format == "reminder":
        day = moment = None
        try:
            day = parse_date(_cell(values, fields.get("appointment_date")))
        except ValueError as exc:
            fail("appointment_date", Reason.BAD_DATE, exc)
        try:
            moment = parse_time(_cell(values, fields.get("appointment_time")))
        except ValueError as exc:
            fail("appointment_time", FormatReason.BAD_TIME, exc)
        if day is not None and moment is not None:
            appointment = (day, moment)
    elif cols.format == "survey":
        present = [f for f in SURVEY_FIELDS if f in fields]
        if all(is_blank(_cell(values, fields[f])) and fields[f] not in cut for f in present):
            errors.append(RowError(row_no, ", ".join(cols.header(fields[f]) for f in present), "",
                                   FormatReason.MISSING_SURVEY, "no survey id or topic given"))  # type: ignore[arg-type]
    return checked, appointment


def _appointment_conflict(person: Person, cols: ColumnMap, row_no: int, earlier: tuple[date, time],
                          appointment: tuple[date, time]) -> RowError:
    """Two appointments for one person: the agent could only remind them of one, so neither is guessed."""
    column = cols.header(cols.fields["appointment_date"])
    what = f"RUT {person.national_id}" if person.national_id else f"phone {person.key}"
    first, here = (f"{d.isoformat()} {format_time(t)}" for d, t in (earlier, appointment))
    return RowError(row_no, column, here, FormatReason.APPOINTMENT_CONFLICT,  # type: ignore[arg-type]
                    f"{what} has the appointment {first} on row {person.appointment_row} and {here} here")


def _name_conflict(person: Person, cols: ColumnMap, row_no: int, name: str) -> list[RowError]:
    """Two people under one RUT (or phone): neither row is merged into the other's job."""
    column = cols.header(cols.fields["name"])
    what = f"RUT {person.national_id}" if person.national_id else f"phone {person.key}"
    errors = [RowError(row_no, column, name, Reason.NAME_CONFLICT,
                       f"{what} has the name {person.name!r} on row {person.name_row} and {name!r} here")]
    if not person.name_conflict:
        person.name_conflict = True
        errors.append(RowError(person.name_row, column, person.name, Reason.NAME_CONFLICT,
                               f"{what} has the name {name!r} on row {row_no} and {person.name!r} here"))
    return errors


def _collect_info(person: Person, result: ParseResult, row_no: int, values: tuple[object, ...]) -> None:
    cols = result.columns
    late_cell = _cell(values, cols.fields.get("days_late"))
    if not is_blank(late_cell):
        try:
            late = parse_int(late_cell)
            person.days_late = late if person.days_late is None else max(person.days_late, late)
        except ValueError as exc:
            result.warnings.append(RowError(row_no, cols.header(cols.fields["days_late"]),
                                            cell_text(late_cell), Reason.BAD_AMOUNT, str(exc)))
    if result.zone_column is not None and person.zone is None:
        _collect_zone(person, result, row_no, _cell(values, result.zone_column))
    for fname in ("company", "email", "age", "city", "appointment_place", *SURVEY_FIELDS):
        if fname in cols.fields and fname not in person.info:
            text = cell_text(_cell(values, cols.fields[fname]))
            if text:
                person.info[fname] = text
    for idx, var in cols.variables:
        if var not in person.info:
            text = cell_text(_cell(values, idx))
            if text:
                person.info[var] = text


def _collect_zone(person: Person, result: ParseResult, row_no: int, cell: object) -> None:
    text = cell_text(cell)
    if not text:
        return
    try:
        person.zone = parse_zone(text)
    except ValueError as exc:
        assert result.zone_column is not None
        result.warnings.append(RowError(row_no, result.columns.header(result.zone_column), text[:_SHOWN_CHARS],
                                        ZoneReason.INVALID_TIMEZONE, str(exc)))  # type: ignore[arg-type]


def zone_warnings(people: Iterable[Person], batch_zone: str) -> list[RowError]:
    """One load warning when the batch's people are in different zones (counted by their first phone)."""
    sets = [phones[0].zones if (phones := p.ordered_phones()) else () for p in people]
    message = zone_mix(sets, batch_zone)
    if message is None:
        return []
    return [RowError(0, "", "", ZoneReason.MIXED_TIME_ZONES, message)]  # type: ignore[arg-type]


def _no_phone(result: ParseResult, row_no: int, values: tuple[object, ...]) -> RowError:
    cols = result.columns
    headers = ", ".join(cols.header(i) for i, _ in cols.phones)
    seen = " | ".join(cell_text(_cell(values, i)) for i, _ in cols.phones if not is_blank(_cell(values, i)))
    return RowError(row_no, headers, seen, Reason.NO_VALID_PHONE,
                    "no phone column holds a valid number" if seen else "no phone given")


def _check_people_phones(result: ParseResult) -> None:
    """Collection rows are instalments: a person needs a valid phone in at least one of their rows."""
    if result.columns.format != "collection":
        return
    headers = ", ".join(result.columns.header(i) for i, _ in result.columns.phones)
    bad_values: dict[int, list[str]] = {}
    for w in result.warnings:
        if w.reason is Reason.INVALID_PHONE:
            bad_values.setdefault(w.row, []).append(w.value)
    for person in result.people.values():
        if person.phones or person.rejected:
            continue
        person.rejected = True
        for row in person.rows:
            seen = " | ".join(bad_values.get(row, []))
            result.errors.append(RowError(row, headers, seen, Reason.NO_VALID_PHONE,
                                          "no valid phone in any row of this person"))
    result.errors.sort(key=lambda e: e.row)
