"""A sheet's extent is measured before calamine parses it: the dense-grid bomb is refused, whatever its spelling.

calamine lays a sheet out as a dense grid between its extreme cell references; a 1 KB workbook with cells A1 and
XFD1048576 would make it allocate 512 GB and abort the process (no exception). Each refusal runs the loader in
a child process: if the check let one through, the child would die instead of printing the error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hostile_files import HEADER_ROW, SHEET, base_parts, minimal_ods, parts_of, rezip, sheet_xml
from loader_data import RUT_A

from speechai.loader.errors import LimitError
from speechai.loader.limits import DEFAULT_LIMITS, MAX_SHEET_CELLS, Limits
from speechai.loader.zipguard import ExtentScan

ROOT = Path(__file__).resolve().parents[2]
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
DATA_ROW = (f'<row r="2"><c r="A2"><v>{RUT_A}</v></c><c r="B2" t="inlineStr"><is><t>Ana</t></is></c>'
            '<c r="C2"><v>991975219</v></c><c r="D2"><v>5</v></c></row>')
_CHILD = """
import json, sys
from pathlib import Path
from speechai.loader.errors import LoadError
from speechai.loader.service import parse_file
from speechai.loader.spec import BatchSource
try:
    result = parse_file(BatchSource(file=Path(sys.argv[1]), account="acme", batch_id="b1"))
    print(json.dumps({"people": sorted(result.people)}))
except LoadError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


# A small launcher reports the child's own peak memory (Linux carries a parent's high-water mark into a child).
_LAUNCHER = """
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120, check=False)
print(json.dumps({"returncode": out.returncode, "stdout": out.stdout, "stderr": out.stderr[-2000:],
                  "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _parse_in_child(path: Path) -> dict[str, object]:
    launched = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-c", _CHILD, str(path)],
                              capture_output=True, text=True, timeout=150, cwd=ROOT, check=True)
    out = json.loads(launched.stdout)
    assert out["returncode"] == 0, out["stderr"]  # a Rust allocation abort shows here (a signal, no JSON)
    return {**json.loads(out["stdout"]), "peak_mib": out["peak_mib"]}


def _refused(path: Path, *needles: str) -> str:
    got = _parse_in_child(path)
    assert got["peak_mib"] < 150, got
    assert got.get("error") == "LimitError", got
    message = str(got["message"])
    for needle in (path.name, *needles):
        assert needle in message, message
    return message


def test_the_two_cell_bomb_is_refused_before_calamine_parses(tmp_path: Path) -> None:
    path = sheet_xml(tmp_path / "grid.xlsx", '<row r="1"><c r="A1"><v>1</v></c></row>'
                     '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>')
    assert path.stat().st_size < 3_000
    message = _refused(path, "spans 1,048,576 rows x 16,384 columns", "17,179,869,184 cells",
                       f"the limit is {MAX_SHEET_CELLS:,} cells", "cell references")
    assert "xl/worksheets/sheet1.xml" in message


def test_a_declared_dimension_over_the_limit_is_read_in_bounded_memory(tmp_path: Path) -> None:
    # exporters write odd <dimension> refs; calamine does not lay its grid out from them
    path = sheet_xml(tmp_path / "dim.xlsx", HEADER_ROW + DATA_ROW, dimension="A1:XFD1048576")
    got = _parse_in_child(path)
    assert got["peak_mib"] < 150 and got.get("error") is None and len(got["people"]) == 1, got


@pytest.mark.parametrize("cell", [
    "<c r='XFD1048576'><v>1</v></c>",  # other quotes
    '<c s="0" r="XFD1048576"><v>1</v></c>',  # r not first
    '<c\n r="XFD1048576"><v>1</v></c>',  # a line break after the tag name
    '<c r = "XFD1048576"><v>1</v></c>',  # spaces around '='
    '<c r="D2" r="XFD1048576"><v>1</v></c>',  # r twice: calamine takes the last
    '<c r="XFD2"><v>1</v></c>',  # a far column in an ordinary row
], ids=["quotes", "second-attribute", "line-break", "spaced", "twice", "far-column-same-row"])
def test_unusual_spellings_of_a_far_cell_are_refused(tmp_path: Path, cell: str) -> None:
    body = HEADER_ROW + DATA_ROW.replace("</row>", cell + "</row>") + '<row r="1000000"><c r="A1000000"/></row>'
    _refused(sheet_xml(tmp_path / "spelled.xlsx", body), "the limit is")


def test_a_prefixed_sheet_is_measured_too(tmp_path: Path) -> None:
    parts = base_parts(tmp_path)
    parts[SHEET] = (f'<?xml version="1.0" encoding="UTF-8"?><x:worksheet xmlns:x="{_MAIN}"><x:sheetData>'
                    '<x:row r="1"><x:c r="A1"><x:v>1</x:v></x:c></x:row>'
                    '<x:row r="1048576"><x:c r="XFD1048576"><x:v>1</x:v></x:c></x:row>'
                    "</x:sheetData></x:worksheet>").encode()
    _refused(rezip(tmp_path / "prefixed.xlsx", parts), "spans 1,048,576 rows")


def test_cells_without_references_count_towards_the_extent(tmp_path: Path) -> None:
    # No r="…": calamine places each cell after the previous one, so 10,000 of them make 10,000 columns.
    body = "<row>" + "<c><v>1</v></c>" * 10_000 + "</row>" + "<row><c><v>1</v></c></row>" * 1_000
    _refused(sheet_xml(tmp_path / "unnumbered.xlsx", body), "the limit is")


def test_a_sheet_within_the_limit_is_read(tmp_path: Path) -> None:
    path = sheet_xml(tmp_path / "ok.xlsx", HEADER_ROW + DATA_ROW + '<row r="5000"><c r="J5000"><v>1</v></c></row>')
    assert _parse_in_child(path)["people"] == ["21373101-7"]


def test_far_apart_rows_within_the_limit_are_read_in_bounded_memory(tmp_path: Path) -> None:
    # 1,000,000 rows x 10 columns: at the limit. Read as one grid that is ~10 million cells (hundreds of MiB);
    # the rows far apart are cut into separate chunks, so the peak stays that of a tiny file.
    far = '<row r="1000000"><c r="J1000000"><v>1</v></c></row>'
    path = sheet_xml(tmp_path / "far.xlsx", HEADER_ROW + DATA_ROW + far)
    got = _parse_in_child(path)
    assert got["people"] == ["21373101-7"] and got["peak_mib"] < 150, got


def _scan(xml: str, limits: Limits = DEFAULT_LIMITS, feed: int = 65536) -> ExtentScan:
    scan = ExtentScan(SHEET, "f.xlsx", limits)
    data = xml.encode()
    for i in range(0, len(data), feed):
        scan.feed(data[i:i + feed])
    return scan


def test_the_scan_measures_rows_columns_and_dimension() -> None:
    xml = (f'<worksheet xmlns="{_MAIN}"><dimension ref="B2:AS99"/><sheetData>'
           '<row r="2"><c r="B2"><v>1</v></c><c r="AS2"><v>1</v></c></row>'
           '<row r="99"><c r="C99"><v>1</v></c></row></sheetData></worksheet>')
    extent = _scan(xml).finish()
    assert extent.dimension == (99, 45) and extent.cols == 45 and extent.cuttable
    assert 99 <= extent.rows <= 99 * 2 and extent.data_start == xml.index("<row")
    assert xml.encode()[extent.data_start:extent.data_end].endswith(b"</row>")


def test_the_limit_is_a_setting() -> None:
    xml = f'<worksheet xmlns="{_MAIN}"><sheetData><row r="1"><c r="J1"><v>1</v></c></row></sheetData></worksheet>'
    _scan(xml, Limits(max_sheet_cells=10)).finish()
    with pytest.raises(LimitError, match=r"spans 1 rows x 11 columns .* the limit is 10 cells"):
        _scan(xml.replace("J1", "K1"), Limits(max_sheet_cells=10)).finish()


def test_rows_beyond_excel_are_refused() -> None:
    xml = (f'<worksheet xmlns="{_MAIN}"><sheetData><row r="1"><c r="A1"/></row>'
           '<row r="2"><c r="A99999999"/></row></sheetData></worksheet>')
    with pytest.raises(LimitError, match="outside Excel's grid"):
        _scan(xml).finish()


def _ods_with_row(tmp_path: Path, name: str, row: str) -> Path:
    path = minimal_ods(tmp_path / name, [["RUT", "Nombre", "Celular", "Monto"], [RUT_A, "Ana", 991975219, 5]])
    parts = parts_of(path)
    parts["content.xml"] = parts["content.xml"].replace(b"</table:table>", row.encode() + b"</table:table>")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), parts.pop("mimetype"))
        for part, data in parts.items():
            zf.writestr(part, data, zipfile.ZIP_DEFLATED)
    return path


def test_an_opendocument_grid_of_repeats_is_refused(tmp_path: Path) -> None:
    # One non-empty cell repeated 16,384 times in a row repeated 1,000,000 times: 16 billion cells for calamine.
    row = ('<table:table-row table:number-rows-repeated="1000000"><table:table-cell '
           'table:number-columns-repeated="16384" office:value-type="float" office:value="1"><text:p>1</text:p>'
           "</table:table-cell></table:table-row>")
    path = _ods_with_row(tmp_path, "repeats.ods", row)
    assert path.stat().st_size < 3_000
    _refused(path, "the limit is", "its cells and repeats")


def test_opendocument_padding_with_empty_repeats_is_read(tmp_path: Path) -> None:
    # What LibreOffice writes after the data: empty rows and cells repeated to the sheet's edge.
    row = ('<table:table-row table:number-rows-repeated="1048570"><table:table-cell '
           'table:number-columns-repeated="16384"/></table:table-row>')
    assert _parse_in_child(_ods_with_row(tmp_path, "padded.ods", row))["people"] == ["21373101-7"]
