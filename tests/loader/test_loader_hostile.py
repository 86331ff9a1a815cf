"""Hostile and broken spreadsheets (issue 9): each is refused with a clear error, or read correctly.

Through the real loader service against the embedded server, and the upload route over real HTTP.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hostile_files import (
    SHEET,
    base_parts,
    bomb,
    lie_about_size,
    mark_encrypted,
    random_text_cell,
    rezip,
    sheet_xml,
    truncated,
)
from loader_data import COLLECTION, NOW, RUT_A, RUT_B
from upload_client import post_upload

from speechai.loader.errors import LimitError, LoadError, Reason, UnreadableFileError
from speechai.loader.limits import MAX_FIELD_CHARS, Limits
from speechai.loader.service import load_batch, parse_file
from speechai.store.models import Batch, Job

ROWS = [[RUT_A, "Ana Díaz", 991975219, 50000, "2026-03-10"], [RUT_B, "Luis Soto", 981234567, 2000, None]]


async def _nothing_written(batch_id: str = "b1") -> None:
    assert await Batch.get(batch_id) is None
    assert await Job.find({"batch_id": batch_id}).count() == 0


@pytest.fixture(scope="module")
def bomb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.3 MB on disk, 300 MiB inflated: one cell of 'A's."""
    path = bomb(tmp_path_factory.mktemp("bomb") / "bomb.xlsx", 300 * 2**20)
    assert path.stat().st_size < 1_000_000
    return path


# 1. a valid zip whose sheet XML is cut short ------------------------------------------------------------


async def test_truncated_sheet_xml_is_a_damaged_workbook(db, make_file, source, report_dir: Path,
                                                         tmp_path: Path) -> None:
    path = truncated(tmp_path / "cut.xlsx", make_file(COLLECTION, ROWS * 50))
    with pytest.raises(UnreadableFileError) as info:
        await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert "cut.xlsx" in str(info.value) and "damaged workbook" in str(info.value)
    assert "cut short or malformed" in str(info.value)
    await _nothing_written()


async def test_upload_of_truncated_workbook_answers_400(upload_url: str, make_file, tmp_path: Path) -> None:
    path = truncated(tmp_path / "cut.xlsx", make_file(COLLECTION, ROWS * 50))
    status, body = await post_upload(upload_url, path, account="acme", batch_id="up1")
    assert status == 400 and "cut.xlsx is a damaged workbook" in body["error"]
    await _nothing_written("up1")


# 2. an .xlsx renamed .csv -------------------------------------------------------------------------------


async def test_xlsx_named_csv_is_read_by_its_content(db, make_file, source, report_dir: Path,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    shutil.copy(make_file(COLLECTION, ROWS), path)
    summary = await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert summary.ok and summary.jobs_created == 2
    assert {j.person_key for j in await Job.find({"batch_id": "b1"}).to_list()} == {"21373101-7", "12345670-K"}


async def test_upload_of_xlsx_named_csv(upload_url: str, make_file, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    shutil.copy(make_file(COLLECTION, ROWS), path)
    status, body = await post_upload(upload_url, path, account="acme", batch_id="up2")
    assert status == 200 and body["jobs_created"] == 2, body


# 3. a workbook that inflates --------------------------------------------------------------------------


async def test_inflating_workbook_is_refused_before_parsing(db, bomb_file: Path, source,
                                                            report_dir: Path) -> None:
    with pytest.raises(LimitError) as info:
        await load_batch(source(bomb_file), now=NOW, report_dir=report_dir)
    assert "bomb.xlsx" in str(info.value) and "the limit is 100:1" in str(info.value)
    await _nothing_written()


async def test_upload_of_inflating_workbook_answers_413(upload_url: str, bomb_file: Path) -> None:
    status, body = await post_upload(upload_url, bomb_file, account="acme", batch_id="up3")
    assert status == 413 and "the limit is 100:1" in body["error"], body
    await _nothing_written("up3")


def test_decompressed_total_limit(tmp_path: Path, source) -> None:
    # Random text compresses badly: the ratio is fine, the total is not.
    path = random_text_cell(tmp_path / "big.xlsx", 600_000)
    with pytest.raises(LimitError) as info:
        parse_file(source(path), limits=Limits(max_unzipped_bytes=2**19))
    assert "inflates to 0.6 MiB" in str(info.value) and "decompressed size is 0.5 MiB" in str(info.value)


def test_one_huge_cell_is_refused_while_reading(tmp_path: Path, source) -> None:
    # 2 MiB of random letters: under the total and ratio limits, over the text-run limit.
    path = random_text_cell(tmp_path / "cell.xlsx", 2 * 2**20)
    with pytest.raises(LimitError) as info:
        parse_file(source(path))
    assert "more than 1.0 MiB of text" in str(info.value) and "cell.xlsx" in str(info.value)


def test_a_zip_that_lies_about_its_sizes_is_refused(tmp_path: Path, source) -> None:
    path = lie_about_size(bomb(tmp_path / "liar.xlsx", 64 * 2**20), SHEET, 4096)
    with pytest.raises(UnreadableFileError) as info:
        parse_file(source(path))
    assert "liar.xlsx is a damaged workbook" in str(info.value)


def test_a_row_with_too_many_tags_is_refused(tmp_path: Path, source) -> None:
    path = sheet_xml(tmp_path / "wide.xlsx", '<row r="1">' + "<c/>" * 250_000 + "</row>")
    with pytest.raises(LimitError) as info:
        parse_file(source(path))
    assert "more than 200,000 tags" in str(info.value)


def test_declared_dimension_does_not_pad_rows(tmp_path: Path, source) -> None:
    body = ('<row r="1"><c r="A1" t="inlineStr"><is><t>RUT</t></is></c><c r="B1" t="inlineStr"><is><t>Nombre</t>'
            '</is></c><c r="C1" t="inlineStr"><is><t>Celular</t></is></c><c r="D1" t="inlineStr"><is><t>Monto</t>'
            f'</is></c></row><row r="2"><c r="A2"><v>{RUT_A}</v></c><c r="B2" t="inlineStr"><is><t>Ana</t></is>'
            '</c><c r="C2"><v>991975219</v></c><c r="D2"><v>10</v></c></row>')
    result = parse_file(source(sheet_xml(tmp_path / "dim.xlsx", body, dimension="A1:XFD1048576")))
    assert result.rows == 1 and list(result.people) == ["21373101-7"]


def test_rows_beyond_excels_limit_are_refused(tmp_path: Path, source) -> None:
    body = '<row r="1"><c r="A1" t="inlineStr"><is><t>RUT</t></is></c></row><row r="1048577"><c><v>1</v></c></row>'
    with pytest.raises(LimitError) as info:
        parse_file(source(sheet_xml(tmp_path / "far.xlsx", body)))
    assert "more than 1,048,576 rows" in str(info.value)


# 4. CSV RUT and phone text with a float's '.0' -------------------------------------------------------------


async def test_csv_float_text_rut_and_phone(db, make_file, source, report_dir: Path) -> None:
    path = make_file(COLLECTION, [["213731017.0", "Ana Díaz", "991975219.0", "5000", None],
                                  ["12345670K", "Luis Soto", "981234567", "2000.0", None]], kind="csv")
    summary = await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert summary.ok and summary.rejected == [], summary.rejected
    ana = await Job.find_one({"person_key": "21373101-7"})
    assert ana is not None and [p.number for p in ana.phones] == ["+56991975219"]


# 5. one RUT, two names ------------------------------------------------------------------------------------


async def test_one_rut_with_two_names_is_reported_not_merged(db, make_file, source, report_dir: Path) -> None:
    path = make_file(COLLECTION, [
        [RUT_A, "Ana Díaz", 991975219, 50000, None],     # row 2
        [RUT_B, "Luis Soto", 981234567, 2000, None],     # row 3
        [RUT_A, "Pedro Rojas", 961234567, 900000, None],  # row 4: another person under Ana's RUT
        [RUT_A, "  ANA   diaz ", 221234567, 1000, None],  # row 5: Ana again (case, accent, spaces)
    ])
    summary = await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert not summary.ok and summary.jobs_created == 0
    conflicts = {(e.row, e.value) for e in summary.rejected if e.reason is Reason.NAME_CONFLICT}
    assert conflicts == {(2, "Ana Díaz"), (4, "Pedro Rojas")}
    row4 = next(e for e in summary.rejected if e.row == 4)
    assert row4.column == "NOMBRE" and "RUT 21373101-7" in row4.detail and "'Ana Díaz' on row 2" in row4.detail
    assert 5 not in {e.row for e in summary.rejected}  # a harmless difference is the same person
    await _nothing_written()
    # Accepting partial loads leaves the whole person out, not half of them with the other's debt.
    summary = await load_batch(source(path, accept_partial=True), now=NOW, report_dir=report_dir)
    assert summary.ok and summary.jobs_created == 1
    assert [j.person_key for j in await Job.find({"batch_id": "b1"}).to_list()] == ["12345670-K"]
    assert {e.row: e.reason for e in summary.rejected}[5] is Reason.PERSON_REJECTED


# 6. per-field length limit ----------------------------------------------------------------------------------


async def test_over_long_used_cells_reject_their_row(db, make_file, source, report_dir: Path) -> None:
    long_name = "Ana " + "x" * 32_763
    path = make_file([*COLLECTION, "Sucursal", "Notas"], [
        [RUT_A, long_name, 991975219, 50000, None, "Centro", "n" * 5000],  # row 2: name too long
        [RUT_B, "Luis Soto", 981234567, 2000, None, "s" * 1001, "ok"],    # row 3: an agent variable too long
        ["151112226", "Carla Pérez", 961234567, 10, None, "Norte", "ok"],  # row 4: fine (Notas is ignored)
    ])
    summary = await load_batch(source(path, agent_variables=["Sucursal"]), now=NOW, report_dir=report_dir)
    assert not summary.ok
    got = {(e.row, e.column, e.reason) for e in summary.rejected}
    assert got == {(2, "NOMBRE", Reason.TOO_LONG), (3, "Sucursal", Reason.TOO_LONG)}
    name_error = next(e for e in summary.rejected if e.row == 2)
    assert name_error.detail == f"32,767 characters; the limit is {MAX_FIELD_CHARS:,} per field"
    assert len(name_error.value) < 100  # the report is not flooded with the cell
    summary = await load_batch(source(path, agent_variables=["Sucursal"], accept_partial=True), now=NOW,
                               report_dir=report_dir)
    assert summary.jobs_created == 1
    (carla,) = await Job.find({"batch_id": "b1"}).to_list()
    assert carla.variables["sucursal"] == "Norte" and all(len(v) <= MAX_FIELD_CHARS for v in carla.variables.values())


# 7. long content in an ignored CSV column -----------------------------------------------------------------------


async def test_huge_cell_in_ignored_csv_column_does_not_reject_the_file(db, make_file, source,
                                                                         report_dir: Path) -> None:
    path = make_file([*COLLECTION, "Observación"], [
        [RUT_A, "Ana Díaz", 991975219, 50000, None, "o" * 200_000],
        [RUT_B, "Luis Soto", 981234567, 2000, None, "breve"],
    ], kind="csv")
    summary = await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert summary.ok and summary.jobs_created == 2, summary.rejected


def test_csv_row_and_file_size_limits(make_file, source) -> None:
    path = make_file([*COLLECTION, "Observación"], [[RUT_A, "Ana", 991975219, 5, None, "o" * (5 * 2**20)]],
                     kind="csv")
    with pytest.raises(LimitError) as info:
        parse_file(source(path))
    assert "a row of more than 4,194,304 characters" in str(info.value)
    small = make_file(COLLECTION, ROWS, kind="csv")
    with pytest.raises(LimitError) as info:
        parse_file(source(small), limits=Limits(max_csv_bytes=100))
    assert "the limit for a CSV file is 0.0 MiB" in str(info.value)


# Not what they claim ---------------------------------------------------------------------------------------------


def _zip(tmp_path: Path, name: str, parts: dict[str, bytes]) -> Path:
    return rezip(tmp_path / name, parts)


@pytest.mark.parametrize("name,make,needle", [
    ("noise.xlsx", lambda p: p.write_bytes(bytes(range(256)) * 40), "not a valid .xlsx"),
    ("noise.csv", lambda p: p.write_bytes(bytes(range(256)) * 40), "binary data"),
    ("noise-zip.xlsx", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 40), "zip package is damaged"),
    ("empty-zip.xlsx", lambda p: rezip(p, {}), "not an Excel workbook"),
    ("sheetless.xlsx", lambda p: rezip(p, {"[Content_Types].xml": b"<Types/>"}), "damaged workbook"),
    ("doc.ods", lambda p: rezip(p, {"mimetype": b"application/vnd.oasis.opendocument.spreadsheet"}), ".ods"),
    ("locked.xlsx", lambda p: mark_encrypted(rezip(p, base_parts(p.parent)), SHEET), "password-protected"),
    ("zero.xlsx", lambda p: rezip(p, {**base_parts(p.parent), SHEET: b"<worksheet/>"}), "no rows"),
])
def test_files_that_are_not_what_they_claim(tmp_path: Path, source, name: str, make, needle: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(UnreadableFileError) as info:
        parse_file(source(path))
    assert needle in str(info.value) and name in str(info.value)


async def test_header_without_rows_is_not_loaded(db, make_file, source, report_dir: Path) -> None:
    with pytest.raises(LoadError, match="no data rows"):
        await load_batch(source(make_file(COLLECTION, [])), now=NOW, report_dir=report_dir)
    await _nothing_written()
