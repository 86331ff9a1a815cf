"""Fictitious collection exports shaped like the real ones (wide, one row per instalment).

Used by the example file, the tests and the benchmark. Names are drawn from common Chilean first
names and surnames; RUTs get valid check digits; phones are in the Chilean mobile (9xxxxxxxx) and
Santiago landline (22xxxxxxx) ranges. No real person's data.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

import phonenumbers
from openpyxl import Workbook
from stdnum.cl import rut as cl_rut

FIRST = ("Juan", "María", "José", "Ana", "Luis", "Carmen", "Pedro", "Camila", "Jorge", "Valentina",
         "Diego", "Francisca", "Matías", "Javiera", "Tomás", "Constanza", "Felipe", "Catalina")
LAST = ("González", "Muñoz", "Rojas", "Díaz", "Pérez", "Soto", "Contreras", "Silva", "Martínez",
        "Sepúlveda", "Morales", "Rodríguez", "López", "Fuentes", "Hernández", "Torres", "Araya")
COMPANIES = ("Retail Andes", "Financiera Sur", "Telecom Pacífico")

# The fields the loader reads, among filler columns the loader must ignore (45 columns in all).
WIDE_HEADERS = [
    "N° Operación", "RUTS", "Nombre", "Teléfono móvil", "Teléfono Residencial", "Correo electrónico personal",
    "Saldo actualizado", "FechaVencimiento", "Días de retraso", "Origen Empresa", "Cuota", "Total cuotas",
    "Monto cuota", "Interés", "Gastos cobranza", "Sucursal", "Ejecutivo", "Dirección", "Comuna", "Región",
    "Fecha emisión", "Producto", "Estado", "Tramo mora", "Segmento", "Canal", "Observación", "Tipo deuda",
    "Código cliente", "Fecha último pago", "Monto último pago", "Moneda", "Tasa", "Plazo", "Garantía",
    "Aval", "Cartera", "Fecha asignación", "Gestor", "Prioridad", "Score", "Marca", "Zona", "Campaña",
    "Comentario",
]


def valid_rut(body: int) -> str:
    """RUT digits with their check digit appended, e.g. 21373101 -> '213731017'."""
    return f"{body}{cl_rut.calc_check_digit(str(body))}"


def _valid_number(rng: random.Random, low: int, high: int) -> int:
    """A number in [low, high) that Chile's numbering plan allows (a few blocks are unassigned)."""
    while True:
        n = rng.randrange(low, high)
        if phonenumbers.is_valid_number(phonenumbers.parse(str(n), "CL")):
            return n


def formatted_rut(body: int) -> str:
    return cl_rut.format(valid_rut(body))  # '21.373.101-7'


def wide_collection_rows(people: int, *, seed: int = 7, first_rut: int = 10_000_000,
                         instalments: tuple[int, int] = (1, 3), start: date = date(2026, 1, 5),
                         ) -> Iterator[list[object]]:
    """Rows of a wide export: each person has 1-3 instalment rows with the same RUT and phones."""
    rng = random.Random(seed)
    op = 100000
    for i in range(people):
        body = first_rut + i * 379
        rut_digits = valid_rut(body)
        # Exports mix integer cells, formatted text and lower-case 'k'.
        rut: object = int(rut_digits) if rut_digits[-1].isdigit() and i % 3 else cl_rut.format(rut_digits)
        if isinstance(rut, str) and i % 2:
            rut = rut.lower()
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.choice(LAST)}"
        mobile_n = _valid_number(rng, 920_000_000, 1_000_000_000)
        mobile: object = mobile_n if i % 4 else f"+56 9 {str(mobile_n)[1:5]} {str(mobile_n)[5:]}"
        landline: object = _valid_number(rng, 221_000_000, 230_000_000) if i % 2 else None
        company = COMPANIES[i % len(COMPANIES)]
        n_inst = rng.randint(*instalments)
        for k in range(n_inst):
            op += 1
            due = start + timedelta(days=30 * k + rng.randrange(0, 20))
            amount = rng.randrange(10, 500) * 1000
            filler = [f"x{j}" for j in range(len(WIDE_HEADERS) - 20)]
            yield [
                op, rut, name, mobile, landline, f"persona{i}@example.com",
                amount, due, rng.randrange(0, 200), company, k + 1, n_inst,
                amount, 0.015, 2500, "Santiago Centro", "E-12", "Calle Falsa 123", "Santiago", "RM",
                *filler,
            ]


def write_xlsx(path: Path, headers: list[str], rows: Iterable[list[object]], title: str = "Deudores") -> Path:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title)
    ws.append(headers)
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def write_csv(path: Path, headers: list[str], rows: Iterable[list[object]], *, delimiter: str = ";",
              encoding: str = "utf-8-sig") -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(headers)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
    return path
