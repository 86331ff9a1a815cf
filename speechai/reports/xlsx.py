"""The report as an Excel workbook, written with openpyxl's write-only mode (rows streamed to the file,
constant memory): one sheet per section, typed cells, frozen header row, autofilter, and a stacked bar
chart of outcomes per day on the "Days" sheet."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from speechai.reports.data import MIXED, OUTCOME_CLASSES, Column, Report, Section

FORMATS = {"cents": "#,##0.0000", "rate": "0.0%", "minutes": "#,##0.00", "number": "#,##0.##",
           "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm", "int": "0"}
WIDTHS = {"text": 24, "date": 12, "datetime": 17}
HEADER_FONT = Font(bold=True)


def sheet_name(section: Section) -> str:
    return section.key.replace("_", " ").capitalize()[:31]


def clean_text(value: Any) -> Any:
    """Text as a cell may hold: control characters (a do-not-call reason "a\\x01b", an agent's variable)
    make openpyxl refuse the whole workbook, so each becomes U+FFFD; other values pass unchanged."""
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    # a lone surrogate cannot be written as UTF-8 either
    return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value


def _cell(ws: Any, value: Any, column: Column) -> Any:
    if value == "":
        value = None  # a blank cell: Excel keeps no empty text
    value = clean_text(value)
    if isinstance(value, Decimal):
        # Excel keeps doubles: the shortest decimal text of the value is what a reader gets back
        value = int(value) if value == value.to_integral_value() and column.kind == "int" else float(value)
    cell = WriteOnlyCell(ws, value=value)
    if value is not None and (fmt := FORMATS.get(column.kind)):
        if column.kind != "int" or isinstance(value, int):
            cell.number_format = fmt
    return cell


def _write_section(wb: Workbook, section: Section) -> Any:
    ws = wb.create_sheet(sheet_name(section))
    # Frozen panes, filter and widths are sheet properties: set before the first row is streamed.
    ws.freeze_panes = "A2"
    last_col = get_column_letter(len(section.columns))
    ws.auto_filter.ref = f"A1:{last_col}{len(section.rows) + 1}"
    for i, column in enumerate(section.columns, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(WIDTHS.get(column.kind, 12), len(column.name) + 2)
    header = []
    for column in section.columns:
        cell = WriteOnlyCell(ws, value=clean_text(column.name))
        cell.font = HEADER_FONT
        header.append(cell)
    ws.append(header)
    for row in section.rows:
        ws.append([_cell(ws, v, c) for c, v in zip(section.columns, row, strict=True)])
    return ws


def _outcome_chart(ws: Any, section: Section) -> None:
    """Stacked bars: calls per day by outcome class (columns of the Days sheet)."""
    names = [c.name for c in section.columns]
    first, last = names.index(OUTCOME_CLASSES[0]) + 1, names.index(OUTCOME_CLASSES[-1]) + 1
    rows = len(section.rows)
    chart = BarChart()
    chart.type, chart.grouping, chart.overlap = "col", "stacked", 100
    chart.title = "Calls per day by outcome"
    chart.y_axis.title, chart.x_axis.title = "calls", "local date"
    chart.height, chart.width = 9, 22
    chart.add_data(Reference(ws, min_col=first, max_col=last, min_row=1, max_row=rows + 1), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=max(rows + 1, 2)))
    ws.add_chart(chart, f"{get_column_letter(len(names) + 2)}2")


def write_xlsx(report: Report, target: Path | io.BytesIO) -> None:
    wb = Workbook(write_only=True)
    about = wb.create_sheet("About")
    about.append(["SpeechAI campaign report"])
    about.append(["generated_at", report.generated_at.replace(tzinfo=None)])
    for key, value in report.filter.to_dict().items():
        about.append([key, date.fromisoformat(value) if key in ("from", "to") and value else clean_text(value)])
    unit = "each batch's currency (Batches sheet)" if report.currency == MIXED else report.currency
    about.append(["money", f"cents of {unit} (columns named *_cents), never converted"])
    for code, cost in sorted(report.costs_by_currency.items()):
        about.append([f"cost_cents {code}", float(cost)])
    about.append(["times", "local time of each batch's timezone"])
    for section in report.sections.values():
        ws = _write_section(wb, section)
        if section.key == "days" and section.rows:
            _outcome_chart(ws, section)
    wb.save(target)


def xlsx_bytes(report: Report) -> bytes:
    buf = io.BytesIO()
    write_xlsx(report, buf)
    return buf.getvalue()
