"""Fictitious collection exports shaped like the real ones (wide, one row per instalment).

Used by the example file, the tests and the benchmark. Names are drawn from common Chilean first
names and surnames; RUTs get valid check digits; phones are in the Chilean mobile (9xxxxxxxx) and
Santiago landline (22xxxxxxx) ranges. No real person's data.
"""

from __future__ import annotations

import csv
import itertools
import random
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

import phonenumbers
from openpyxl.utils.cell import get_column_letter
from openpyxl.utils.datetime import to_excel
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
    """Write a workbook the way Excel saves one: a shared-strings table, a ``<dimension>``, dates as
    serial numbers with a date style. Streams the rows (a temporary file holds the sheet data until its size is known),
    so 100,000-row files are written in constant memory apart from the distinct strings.
    """
    strings: dict[str, int] = {}
    n_rows = n_cols = 0
    with tempfile.TemporaryFile() as data:
        for n_rows, row in enumerate(itertools.chain([headers], rows), start=1):
            n_cols = max(n_cols, len(row))
            cells = "".join(_xlsx_cell(f"{get_column_letter(i)}{n_rows}", v, strings)
                            for i, v in enumerate(row, start=1) if v is not None)
            data.write(f'<row r="{n_rows}">{cells}</row>'.encode())
        data.seek(0)
        ref = f"A1:{get_column_letter(max(n_cols, 1))}{max(n_rows, 1)}"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, xml in _XLSX_PARTS.items():
                zf.writestr(name, xml.replace("{title}", escape(title, {'"': "&quot;"})))
            with zf.open("xl/worksheets/sheet1.xml", "w") as sheet:
                sheet.write(f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_MAIN}">'
                            f'<dimension ref="{ref}"/><sheetData>'.encode())
                shutil.copyfileobj(data, sheet)
                sheet.write(b"</sheetData></worksheet>")
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf, \
                zf.open("xl/sharedStrings.xml", "w") as sst:
            sst.write(f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="{_MAIN}" '
                      f'count="{len(strings)}" uniqueCount="{len(strings)}">'.encode())
            for text in strings:  # dicts keep insertion order: the index order
                space = ' xml:space="preserve"' if text != text.strip() else ""
                sst.write(f"<si><t{space}>{escape(text)}</t></si>".encode())
            sst.write(b"</sst>")
    return path


_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_XLSX_PARTS = {
    "[Content_Types].xml": _XML_HEAD + (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
        f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_CT}.worksheet+xml"/>'
        f'<Override PartName="/xl/styles.xml" ContentType="{_CT}.styles+xml"/>'
        f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_CT}.sharedStrings+xml"/>'
        "</Types>"),
    "_rels/.rels": _XML_HEAD + (
        f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" Target="xl/workbook.xml" '
        f'Type="{_REL}/officeDocument"/></Relationships>'),
    "xl/workbook.xml": _XML_HEAD + (
        f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
        '<sheet name="{title}" sheetId="1" r:id="rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": _XML_HEAD + (
        f'<Relationships xmlns="{_PKG_REL}">'
        f'<Relationship Id="rId1" Target="worksheets/sheet1.xml" Type="{_REL}/worksheet"/>'
        f'<Relationship Id="rId2" Target="styles.xml" Type="{_REL}/styles"/>'
        f'<Relationship Id="rId3" Target="sharedStrings.xml" Type="{_REL}/sharedStrings"/>'
        "</Relationships>"),
    # Cell styles 1-3: Excel's built-in date (14), time (21) and date-time (22) number formats.
    "xl/styles.xml": _XML_HEAD + (
        f'<styleSheet xmlns="{_MAIN}"><fonts count="1"><font><sz val="11"/><name val="Calibri"/></font>'
        '</fonts><fills count="2"><fill><patternFill patternType="none"/></fill><fill>'
        '<patternFill patternType="gray125"/></fill></fills><borders count="1"><border><left/><right/>'
        '<top/><bottom/><diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" '
        'fillId="0" borderId="0"/></cellStyleXfs><cellXfs count="4">'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="21" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="22" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '</cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"),
}


def _xlsx_cell(ref: str, value: object, strings: dict[str, int]) -> str:
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float | Decimal):
        return f'<c r="{ref}"><v>{value}</v></c>'
    if isinstance(value, datetime | date | time):
        style = 2 if isinstance(value, time) else 3 if isinstance(value, datetime) else 1
        return f'<c r="{ref}" s="{style}"><v>{to_excel(value)}</v></c>'
    index = strings.setdefault(str(value), len(strings))
    return f'<c r="{ref}" t="s"><v>{index}</v></c>'


def write_csv(path: Path, headers: list[str], rows: Iterable[list[object]], *, delimiter: str = ";",
              encoding: str = "utf-8-sig") -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(headers)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
    return path
