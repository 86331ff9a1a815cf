"""structlog set-up: JSON lines (or console) with job/call ids bound by the actors.

Every event passes through :func:`redact_event` before it is rendered, at every level: debtors' phones,
RUTs and names never reach a log file or the journal in clear. Fields named after personal data
(``phone``, ``to_number``, ``rut``, ``name`` …) are masked whatever their value; any other string
anywhere in the event (message, exception text, nested dicts and lists) has E.164 phones and RUTs
masked in place. ``from_number`` is the campaign's own caller id and is kept.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import structlog

# E.164: "+", country code, subscriber number; at most 15 digits. Separators (space, dot, dash) are
# allowed between digits because raw spreadsheet values show up in error messages.
PHONE_RE = re.compile(r"(?<![\d+])\+\d(?:[ .-]?\d){7,14}(?!\d)")
# Chilean RUT: 7-8 digit body, optionally dotted, a dash and the check digit (0-9 or K).
RUT_RE = re.compile(r"(?<![\d.])\d{1,2}(?:\.?\d{3}){2}-[\dkK](?![\w])")
EMAIL_RE = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*@([\w-]+(?:\.[\w-]+)+)")

# Values masked whatever they look like (English field names and the usual Spanish spreadsheet headers).
PHONE_KEYS = frozenset({"phone", "phones", "to_number", "phone_number", "msisdn",
                        "telefono", "telefonos", "teléfono", "teléfonos", "fono", "celular", "movil", "móvil"})
ID_KEYS = frozenset({"rut", "national_id", "person_key", "dni"})
NAME_KEYS = frozenset({"name", "names", "full_name", "first_name", "last_name", "debtor_name", "customer_name",
                       "nombre", "nombres", "apellido", "apellidos", "nombre_completo"})
EMAIL_KEYS = frozenset({"email", "correo", "mail"})
SENSITIVE_KEYS = PHONE_KEYS | ID_KEYS | NAME_KEYS | EMAIL_KEYS
# Ours, not a debtor's: kept in clear.
KEEP_KEYS = frozenset({"from_number", "timestamp", "level", "logger"})


def mask_phone(text: str) -> str:
    """``+56987654321`` → ``+56*****4321``: country code and last digits kept for support."""
    digits = re.sub(r"\D", "", text)
    head, tail = (2, 4) if len(digits) >= 10 else (1, 2)
    return "+" + digits[:head] + "*" * (len(digits) - head - tail) + digits[-tail:]


def mask_rut(text: str) -> str:
    """``21373101-7`` or ``21.373.101-7`` → ``21.***.***-7``."""
    body, check = text.replace(".", "").split("-")
    return f"{body[:len(body) - 6]}.***.***-{check.upper()}"


def mask_name(text: str) -> str:
    """``María José González`` → ``M*** J*** G***``."""
    return " ".join(word[0] + "***" for word in text.split()) or "***"


def mask_opaque(text: str) -> str:
    """A personal value of unknown shape: only its last two characters survive (none when short)."""
    return "*" * (len(text) - 2) + text[-2:] if len(text) >= 6 else "***"


def redact_text(text: str) -> str:
    """Mask every E.164 phone, RUT and e-mail address inside free text; anything else is unchanged."""
    if not any(c.isdigit() for c in text) and "@" not in text:
        return text  # the common case: nothing to look for
    text = PHONE_RE.sub(lambda m: mask_phone(m.group()), text)
    text = RUT_RE.sub(lambda m: mask_rut(m.group()), text)
    return EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def _mask_keyed(key: str, value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_keyed(key, v) for v in value]
    if isinstance(value, Mapping):
        return redact_value(value)
    if value is None or isinstance(value, bool):
        return value
    text = str(value)
    if PHONE_RE.fullmatch(text.strip()):
        return mask_phone(text)
    if RUT_RE.fullmatch(text.strip()):
        return mask_rut(text.strip())
    if key in NAME_KEYS:
        return mask_name(text)
    if key in EMAIL_KEYS:
        return redact_text(text) if "@" in text else mask_opaque(text)
    return mask_opaque(text)


def redact_value(value: Any) -> Any:
    """A copy of ``value`` with personal data masked; containers are walked, other types kept."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_item(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_value(v) for v in value)
    return value


def _redact_item(key: object, value: Any) -> Any:
    if key in KEEP_KEYS:
        return value
    if isinstance(key, str) and key.lower() in SENSITIVE_KEYS:
        return _mask_keyed(key.lower(), value)
    return redact_value(value)


def redact_event(_logger: object, _method: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """structlog processor: :func:`redact_value` over the whole event."""
    return redact_value(event_dict)


def configure_logging(level: str = "info", fmt: str = "json", file: str | Path = "") -> None:
    stream: TextIO = _open_private(Path(file)) if file else sys.stderr
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_event,  # after the exception is text, before anything is written
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def _open_private(path: Path) -> TextIO:
    """Append to the log file; a new one is created readable by its owner only (0600). An existing
    file keeps the mode its operator gave it (e.g. 0640 for a log shipper's group)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return open(fd, "a", encoding="utf-8")
