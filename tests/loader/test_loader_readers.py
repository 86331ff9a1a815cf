"""The two workbook readers (calamine, the default, and openpyxl) give the same load."""

from __future__ import annotations

import zipfile
from datetime import date, datetime, time
from pathlib import Path

import pytest
from hostile_files import HEADER_ROW, SHEET, base_parts, minimal_ods, rezip, sheet_xml
from loader_data import COLLECTION, RUT_A, RUT_B

from speechai.loader import reader, zipguard
from speechai.loader.errors import LimitError, LoadError, UnreadableFileError
from speechai.loader.people import ParseResult
from speechai.loader.reader import DEFAULT_READER, open_sheet
from speechai.loader.service import parse_file
from speechai.loader.synthetic import WIDE_HEADERS, wide_collection_rows, write_xlsx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "debtors.xlsx"


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


def _outcome(source, path: Path, reader_name: str, **kw: object) -> dict[str, object]:
    try:
        return _snapshot(parse_file(source(path, **kw), reader=reader_name))
    except LoadError as exc:  # a file both readers refuse must be refused alike
        return {"refused": type(exc).__name__, "message": str(exc)}


def _both(source, path: Path, **kw: object) -> dict[str, object]:
    calamine = _outcome(source, path, "calamine", **kw)
    assert calamine == _outcome(source, path, "openpyxl", **kw)
    return calamine


def test_the_default_reader_is_calamine(source, tmp_path: Path) -> None:
    assert DEFAULT_READER == "calamine"
    path = minimal_ods(tmp_path / "d.ods", [["RUT", "Nombre", "Celular", "Monto"], [RUT_A, "Ana", 991975219, 7]])
    assert parse_file(source(path)).people["21373101-7"].variables("collection")["total_debt"] == "7"


def test_example_file(source) -> None:
    got = _both(source, EXAMPLE, sheet="Deudores", agent_variables=["Tramo mora"])
    assert got["rows"] > 0 and len(got["people"]) == 30 and not got["errors"]


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.xlsx")), ids=lambda p: p.name)
def test_every_example_workbook(source, path: Path) -> None:
    got = _both(source, path)
    assert got.get("rows", 0) or got.get("refused"), got


def test_a_sheet_read_in_many_chunks_gives_the_same_load(source, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of one 64 KiB read each and chunks of 500 grid cells: the export is parsed as a dozen workbooks.
    monkeypatch.setattr(zipguard, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(reader, "CHUNK_CELLS", 500)
    path = write_xlsx(tmp_path / "wide.xlsx", WIDE_HEADERS, wide_collection_rows(300, seed=9))
    with path.open("rb") as f, zipguard.open_archive(f, path.name, reader.DEFAULT_LIMITS) as archive:
        extent = zipguard.inflate_all(archive)["xl/worksheets/sheet1.xml"]
    with zipfile.ZipFile(path) as plain:
        chunks = sum(1 for _ in reader._sheet_chunks(plain, "xl/worksheets/sheet1.xml", extent, path.name))
    assert extent.cuttable and len(extent.blocks) > 10 and chunks > 10
    got = _both(source, path, agent_variables=["Tramo mora", "Sucursal"])
    assert len(got["people"]) == 300


def test_rows_and_cells_without_references_are_read_whole(source, tmp_path: Path) -> None:
    # Some writers leave out r="…": positions are then counted; such a sheet is not cut into chunks.
    cell = '<c t="inlineStr"><is><t>{}</t></is></c>'.format
    body = ("<row>" + "".join(cell(h) for h in ("RUT", "Nombre", "Celular", "Monto")) + "</row><row/>"
            f"<row><c><v>{RUT_A}</v></c>{cell('Ana')}<c><v>991975219</v></c><c><v>10</v></c></row>"
            f"<row>{cell(RUT_B)}{cell('Luis')}<c/><c><v>1500</v></c></row>")
    got = _both(source, sheet_xml(tmp_path / "norefs.xlsx", body))
    assert got["rows"] == 2 and len(got["people"]) == 2 and got["errors"][0]["row"] == 4, got


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
        parse_file(source(path), reader="openpyxl")


def test_sparse_workbook_is_refused_by_calamine_and_streamed_by_openpyxl(source, tmp_path: Path) -> None:
    # Two cells far apart: calamine would lay out a 17-billion-cell grid; the extent check refuses it first.
    body = (HEADER_ROW + f'<row r="2"><c r="A2"><v>{RUT_A}</v></c><c r="B2" t="inlineStr"><is><t>Ana</t></is></c>'
            '<c r="C2"><v>991975219</v></c><c r="D2"><v>5</v></c></row>'
            '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>')
    path = sheet_xml(tmp_path / "sparse.xlsx", body)
    with pytest.raises(LimitError, match=r"spans 1,048,576 rows x 16,384 columns"):
        parse_file(source(path))
    result = parse_file(source(path), reader="openpyxl")
    assert list(result.people) == ["21373101-7"] and result.rows == 2


@pytest.mark.parametrize("data", ["<sheetData/>", "<sheetData></sheetData>"], ids=["self-closing", "empty"])
def test_an_empty_sheet_is_refused_alike(source, tmp_path: Path, data: str) -> None:
    parts = base_parts(tmp_path)
    parts[SHEET] = f'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">{data}' \
                   "</worksheet>"
    got = _both(source, rezip(tmp_path / "empty.xlsx", parts))
    assert got == {"refused": "UnreadableFileError", "message": "empty.xlsx has no rows: the sheet is empty"}
