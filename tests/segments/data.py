"""A collection file with delinquency figures, and segment rules for it (fictitious people only)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from speechai.loader.synthetic import valid_rut, write_xlsx

NOW = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # Monday 10:00 in Santiago
HEADERS = ["RUT", "NOMBRE", "TELEFONO", "MONTO", "FECHA_VENC", "DIAS_MORA", "CIUDAD"]
# (phone, amount, days late, city): one person each
PEOPLE = [
    ("+56975000001", 80000, 12, "Santiago"),  # early
    ("+56975000002", 900000, 75, "Santiago"),  # big-late
    ("+56975000003", 20000, 75, "Talca"),  # talca
    ("+56975000004", 20000, 75, "Santiago"),  # default
    ("+56975000005", 30000, 3, "Talca"),  # early (first match wins over talca)
]
EXPECTED = {"+56975000001": "early", "+56975000002": "big-late", "+56975000003": "talca",
            "+56975000004": "default", "+56975000005": "early"}
RULES = [
    {"name": "early", "match": {"days_late": {"min": 0, "max": 30}}, "agent_id": "agent_soft",
     "variables": {"discount": "10%", "payment_deadline": "2026-03-20"},
     "overrides": {"max_attempts": 1, "priority": 60}},
    {"name": "big-late", "match": {"days_late": {"min": 31}, "amount": {"min": 500000}}, "agent_id": "agent_firm",
     "variables": {"instalment_offer": "12"}, "overrides": {"priority": 90}},
    {"name": "talca", "match": {"ciudad": ["Talca", "Curicó"]}, "variables": {"office": "Talca"}},
    {"name": "default"},
]


def collection_file(tmp: Path, people: list[tuple[str, int, int, str]] = PEOPLE) -> Path:
    rows = [[valid_rut(20000000 + i), f"Persona {i}", phone[3:], amount, "2026-01-10", late, city]
            for i, (phone, amount, late, city) in enumerate(people)]
    return write_xlsx(tmp / "deudores.xlsx", HEADERS, rows)


AGENT_VARIABLES = ["CIUDAD"]  # a collection file passes the city to the agent only when asked to
