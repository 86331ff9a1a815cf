"""Which column holds which field: header aliases per format, config renames, format detection.

Headers are compared by ``header_key`` (no case, accents, spacing or punctuation), so 'Teléfono móvil',
'TELEFONO_MOVIL' and 'telefono movil' are one header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from speechai.loader.errors import LoadError, MissingColumnsError
from speechai.loader.normalize import header_key, variable_name

# Canonical field -> accepted header keys, most specific first (the first one present wins).
ALIASES: dict[str, tuple[str, ...]] = {
    "rut": ("rut", "ruts", "rutdeudor", "rutcliente", "rutdv", "run", "nationalid"),
    "name": ("nombre", "nombres", "nombrecompleto", "nombredeudor", "nombrecliente", "name", "fullname"),
    "mobile": ("telefonomovil", "telefonocelular", "celular", "movil", "fonomovil", "mobile", "cellphone"),
    "landline": ("telefonoresidencial", "telefonofijo", "telefonolaboral", "telefonocomercial", "fijo",
                 "fonofijo", "residencial", "landline"),
    "phone": ("telefono", "telefonos", "fono", "phone", "phonenumber", "numero"),
    "amount": ("monto", "saldoactualizado", "saldo", "montodeuda", "deuda", "totaldeuda", "saldodeuda",
               "montoadeudado", "deudatotal", "amount", "balance"),
    "due_date": ("fechavenc", "fechavencimiento", "fechadevencimiento", "vencimiento", "duedate"),
    "days_late": ("diasderetraso", "diasretraso", "diasmora", "diasdemora", "diasatraso", "daysoverdue"),
    "company": ("origenempresa", "empresa", "acreedor", "company"),
    "email": ("correoelectronicopersonal", "correoelectronico", "correo", "email", "mail"),
    "age": ("edad", "age"),
    "city": ("ciudad", "city", "comuna"),
    # reminder
    "appointment_date": ("fechacita", "fechadelacita", "fechaatencion", "fechareserva", "fecha", "appointmentdate",
                         "date"),
    "appointment_time": ("horacita", "horadelacita", "horaatencion", "horareserva", "hora", "appointmenttime",
                         "time"),
    "appointment_place": ("lugarcita", "lugar", "direccion", "sucursal", "centro", "centromedico", "consulta",
                          "sede", "location", "place", "address"),
    # survey
    "survey_id": ("idencuesta", "codigoencuesta", "encuestaid", "encuesta", "surveyid", "surveycode", "survey"),
    "survey_topic": ("temaencuesta", "tema", "topico", "asunto", "surveytopic", "topic", "subject"),
}
PHONE_FIELDS = ("mobile", "phone", "landline")
FIELDS = frozenset(ALIASES)
FORMATS = ("collection", "marketing", "generic", "reminder", "survey")
# Batch use case (the Chile caller-ID rule, docs/dialing.md) a format implies when the batch sets none.
FORMAT_USE_CASE: dict[str, str | None] = {"collection": "collection", "marketing": "marketing", "generic": None,
                                          "reminder": "reminder", "survey": "survey"}
SURVEY_FIELDS = ("survey_id", "survey_topic")
# 'phone*': at least one phone column; 'survey*': a survey id or a topic column (or both).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "collection": ("rut", "name", "amount", "phone*"),
    "marketing": ("name", "phone*"),
    "generic": ("name", "phone*"),
    "reminder": ("name", "phone*", "appointment_date", "appointment_time"),
    "survey": ("name", "phone*", "survey*"),
}
# Fields each format reads; other columns are ignored unless passed as variables (generic passes all).
_READS: dict[str, frozenset[str]] = {
    "collection": frozenset({"rut", "name", "amount", "due_date", "days_late", "company", "email",
                             *PHONE_FIELDS}),
    "marketing": frozenset({"rut", "name", "email", "age", "city", *PHONE_FIELDS}),
    "generic": frozenset({"rut", "name", *PHONE_FIELDS}),
    "reminder": frozenset({"rut", "name", "appointment_date", "appointment_time", "appointment_place",
                           *PHONE_FIELDS}),
    "survey": frozenset({"rut", "name", *SURVEY_FIELDS, *PHONE_FIELDS}),
}
_NUMBERED = re.compile(r"^(.*?)(\d+)$")  # 'Teléfono móvil 2' is another mobile column


@dataclass
class ColumnMap:
    format: str
    headers: list[str]
    fields: dict[str, int]  # single-valued field -> column index
    phones: list[tuple[int, str]]  # (column index, kind hint) in column order
    variables: list[tuple[int, str]] = field(default_factory=list)  # (column index, variable name)

    def header(self, index: int) -> str:
        return self.headers[index]

    def used(self) -> list[int]:
        """Indexes of the columns whose values become job fields or agent variables; the rest are ignored."""
        return sorted({*self.fields.values(), *(i for i, _ in self.phones), *(i for i, _ in self.variables)})


# How required fields are named to the operator when a column is missing.
_SPELLINGS = {
    "rut": "RUT / RUTS / Rut deudor",
    "name": "Nombre / Nombre completo / Name",
    "amount": "Monto / Saldo actualizado / Saldo / Deuda",
    "phone*": "Teléfono / Teléfono móvil / Celular / Teléfono Residencial / Fono / Phone",
    "appointment_date": "Fecha cita / Fecha / Appointment date / Date",
    "appointment_time": "Hora cita / Hora / Appointment time / Time",
    "survey*": "Encuesta / ID encuesta / Tema / Survey id / Topic",
}


def _field_label(required: str) -> str:
    return {"phone*": "phone", "survey*": "survey_id or survey_topic"}.get(required, required)


def _expected(fmt: str) -> list[str]:
    return [f"{_field_label(r)} ({_SPELLINGS[r]})" for r in _REQUIRED[fmt]]


def _is_missing(required: str, fields: dict[str, int], phones: list[tuple[int, str]]) -> bool:
    if required == "phone*":
        return not phones
    if required == "survey*":
        return not any(f in fields for f in SURVEY_FIELDS)
    return required not in fields


def _phone_field(key: str) -> str | None:
    for f in PHONE_FIELDS:
        if key in ALIASES[f]:
            return f
    m = _NUMBERED.match(key)
    if m:
        for f in PHONE_FIELDS:
            if m.group(1) in ALIASES[f]:
                return f
    return None


def resolve(headers: list[str], fmt: str, renames: dict[str, str] | None = None,
            agent_variables: list[str] | None = None) -> ColumnMap:
    """Map a header row onto a format; raises ``MissingColumnsError`` naming what is missing."""
    renames = {header_key(k): v for k, v in (renames or {}).items()}
    keys = [header_key(h) for h in headers]
    found = {k for k in keys if k}
    unknown = [k for k in renames if k not in found]
    if unknown:
        raise LoadError(f"column mapping names header(s) not in the file: {', '.join(unknown)}; "
                        f"found headers: {', '.join(h for h in headers if h)}")
    if fmt == "auto":
        fmt = detect_format(headers, renames)
    reads = _READS[fmt]
    fields: dict[str, int] = {}
    phones: list[tuple[int, str]] = []
    variables: list[tuple[int, str]] = []
    used: set[int] = set()
    # Explicit renames first: they override the aliases.
    for i, k in enumerate(keys):
        target = renames.get(k)
        if target is None:
            continue
        used.add(i)
        if target in PHONE_FIELDS:
            phones.append((i, "landline" if target == "landline" else "mobile"))
        elif target in FIELDS:
            fields[target] = i
        else:
            variables.append((i, target))
    for f in sorted(reads - set(PHONE_FIELDS), key=list(ALIASES).index):
        if f in fields:
            continue
        for alias in ALIASES[f]:
            if alias in keys and keys.index(alias) not in used:
                fields[f] = keys.index(alias)
                used.add(fields[f])
                break
    for i, k in enumerate(keys):
        if i not in used and (pf := _phone_field(k)):
            phones.append((i, "landline" if pf == "landline" else "mobile"))
            used.add(i)
    phones.sort()
    missing = [r for r in _REQUIRED[fmt] if _is_missing(r, fields, phones)]
    if missing:
        raise MissingColumnsError(fmt, [_field_label(m) for m in missing], _expected(fmt), [h for h in headers if h])
    by_key = {k: i for i, k in reversed(list(enumerate(keys))) if k}
    for wanted in agent_variables or []:
        k = header_key(wanted)
        if k in by_key:
            variables.append((by_key[k], variable_name(wanted)))
        elif wanted in fields:
            variables.append((fields[wanted], wanted))
        else:
            raise LoadError(f"agent variable column {wanted!r} is not in the file; "
                            f"found headers: {', '.join(h for h in headers if h)}")
    if fmt == "generic":  # every other column goes to the agent (var1, var2, ...)
        taken = used | {i for i, _ in variables}
        variables += [(i, variable_name(h)) for i, h in enumerate(headers) if h and i not in taken]
    return ColumnMap(fmt, headers, fields, phones, variables)


def detect_format(headers: list[str], renames: dict[str, str] | None = None) -> str:
    keys = {header_key(h) for h in headers}
    present = {f for f, aliases in ALIASES.items() if keys & set(aliases)}
    present |= {v for v in (renames or {}).values() if v in FIELDS}
    if any(_phone_field(k) for k in keys):
        present.add("phone")
    # An amount means debts; an appointment or a survey column beats a RUT (reminders and surveys may carry one).
    if "amount" in present:
        return "collection"
    if {"appointment_date", "appointment_time"} <= present:
        return "reminder"
    if "survey_id" in present or keys & {"temaencuesta", "surveytopic"}:  # 'Tema' alone is too common
        return "survey"
    if "rut" in present:
        return "collection"
    if present & {"email", "age", "city"}:
        return "marketing"
    return "generic"


def header_score(row: list[str]) -> int:
    """How header-like a row is: the number of cells that name a known field."""
    keys = [header_key(c) for c in row]
    return sum(1 for k in keys if k and (any(k in a for a in ALIASES.values()) or _phone_field(k)))
