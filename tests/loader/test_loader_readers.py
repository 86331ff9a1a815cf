"""The two workbook readers (openpyxl, the default, and calamine) give the same load."""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path

import pytest
from hostile_files import HEADER_ROW, minimal_ods, sheet_xml
from loader_data import COLLECTION, RUT_A, RUT_B

from speechai.loader.errors import UnreadableFileError
from speechai.loader.people import ParseResult
from speechai.loader.reader import open_sheet
from speechai.loader.service import parse_file
from speechai.loader.synthetic import WIDE_HEADERS, wide_collection_rows, write_xlsx

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "debtors.xlsx"


def _snapshot(result: ParseResult) -> dict[str, object]:
    fmt = result.columns.format
    return {
        "format": fmt,
        "rows": result.rows,
        "headers": [h for h in result.columns.headers if h],
        "people": {k: (p.name, p.national_id, p.rows, p.ordered_phones(), p.variables(fmt), p.rejected)
                   for k, p in result.people.items()},
        "errors": [e.to_dict() for e in result.errors],
        "warnings": [e.to_dict() for e in result.warnings],
    }


def _both(source, path: Path, **kw: object) -> dict[str, object]:
    calamine = _snapshot(parse_file(source(path, **kw), reader="calamine"))
    assert calamine == _snapshot(parse_file(source(path, **kw), reader="openpyxl"))
    return calamine


def test_example_file(source) -> None:
    got = _both(source, EXAMPLE, sheet="Deudores", agent_variables=["Tramo mora"])
    assert got["rows"] > 0 and len(got["people"]) == 30 and not got["errors"]


def test_wide_export(source, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "wide.xlsx", WIDE_HEADERS, wide_collection_rows(300, seed=5))
    got = _both(source, path, agent_variables=["Tramo mora", "Sucursal"])
    assert len(got["people"]) == 300


def test_row_errors_and_typed_cells(make_file, source) -> None:
    path = make_file([*COLLECTION, "Días de retraso", "Hora"], [
        [int(RUT_A), "Ana Díaz", 991975219, 50000, date(2026, 3, 10), 12, time(10, 30)],
        [float(RUT_A), "Ana Díaz", "221234567", 70000.5, datetime(2026, 1, 31, 0, 0), 30.0, None],
        [213731018, "Bad Rut", 991975219, 1000, None, None, None],
        [RUT_B, "", 991975219, "mil", "31/02/2026", "x", None],
        ["151112226", "Carla", "99197521", True, 46100, None, None],
        [RUT_A, "Pedro Rojas", 961234567, 10, None, None, None],
        [None, None, None, None, None, None, None],
        ["17222333-6", "Eva " + "x" * 2000, 981234567, 10, None, None, None],
    ])
    got = _both(source, path, accept_partial=True, agent_variables=["Hora"])
    reasons = {e["reason"] for e in got["errors"]}  # type: ignore[union-attr]
    assert {"invalid_rut", "missing_name", "bad_amount", "bad_date", "name_conflict", "too_long"} <= reasons


def test_sheet_that_starts_below_and_right_of_a1(source, tmp_path: Path) -> None:
    body = ('<row r="3"><c r="B3" t="inlineStr"><is><t>Informe</t></is></c></row>'
            '<row r="5"><c r="B5" t="inlineStr"><is><t>RUT</t></is></c><c r="C5" t="inlineStr"><is><t>Nombre</t>'
            '</is></c><c r="D5" t="inlineStr"><is><t>Celular</t></is></c><c r="E5" t="inlineStr"><is><t>Monto</t>'
            f'</is></c></row><row r="7"><c r="B7"><v>{RUT_A}</v></c><c r="C7" t="inlineStr"><is><t>Ana</t></is>'
            '</c><c r="D7"><v>991975219</v></c><c r="E7" t="inlineStr"><is><t>mil</t></is></c></row>')
    got = _both(source, sheet_xml(tmp_path / "offset.xlsx", body))
    assert got["errors"] == [{"row": 7, "column": "Monto", "value": "mil", "reason": "bad_amount",
                              "detail": "not an amount: 'mil'"}]


@pytest.mark.parametrize("reader", ["calamine", "openpyxl"])
def test_unknown_sheet_names_the_sheets(make_file, reader: str) -> None:
    with pytest.raises(UnreadableFileError, match="has no sheet 'Otra'; sheets: Deudores"), \
            open_sheet(make_file(COLLECTION, [[RUT_A, "Ana", 991975219, 1, None]]), "Otra", reader=reader):
        pass


def test_ods_is_read_by_calamine_and_refused_by_openpyxl(source, tmp_path: Path) -> None:
    path = minimal_ods(tmp_path / "deudores.ods", [["RUT", "Nombre", "Celular", "Monto"],
                                                   [RUT_A, "Ana Díaz", 991975219, 50000],
                                                   [RUT_B, "Luis Soto", 981234567, 1500]])
    result = parse_file(source(path), reader="calamine")
    assert not result.errors and result.people["21373101-7"].variables("collection")["total_debt"] == "50000"
    with pytest.raises(UnreadableFileError, match=r"OpenDocument spreadsheet \(.ods\)"):
        parse_file(source(path))


def test_sparse_workbook_is_read_by_the_default_reader(source, tmp_path: Path) -> None:
    # Two cells far apart: the default reader streams the rows (calamine would allocate 512 GB).
    body = (HEADER_ROW + f'<row r="2"><c r="A2"><v>{RUT_A}</v></c><c r="B2" t="inlineStr"><is><t>Ana</t></is></c>'
            '<c r="C2"><v>991975219</v></c><c r="D2"><v>5</v></c></row>'
            '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>')
    result = parse_file(source(sheet_xml(tmp_path / "sparse.xlsx", body)))
    assert list(result.people) == ["21373101-7"] and result.rows == 2
