"""Broken and hostile workbooks for the loader tests, built with zipfile (small on disk)."""

from __future__ import annotations

import random
import string
import struct
import zipfile
from pathlib import Path

from speechai.loader.synthetic import write_xlsx

SHEET = "xl/worksheets/sheet1.xml"
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_HEAD = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_MAIN}">'
HEADER_ROW = ('<row r="1"><c r="A1" t="inlineStr"><is><t>RUT</t></is></c><c r="B1" t="inlineStr"><is><t>NOMBRE'
              '</t></is></c><c r="C1" t="inlineStr"><is><t>TELEFONO</t></is></c><c r="D1" t="inlineStr"><is>'
              '<t>MONTO</t></is></c></row>')
CHUNK = 1 << 22


def parts_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def base_parts(tmp: Path) -> dict[str, bytes]:
    """The parts of a valid one-sheet workbook (its sheet is replaced by the callers)."""
    return parts_of(write_xlsx(tmp / "_base.xlsx", ["RUT"], [["213731017"]]))


def rezip(path: Path, parts: dict[str, bytes], level: int = 9) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return path


def truncated(path: Path, valid: Path) -> Path:
    """A valid zip whose sheet XML stops half way."""
    parts = parts_of(valid)
    parts[SHEET] = parts[SHEET][: len(parts[SHEET]) // 2]
    return rezip(path, parts)


def bomb(path: Path, inflated: int, *, tail: str = "") -> Path:
    """A workbook whose one NOMBRE cell is ``inflated`` bytes of 'A' (about 1,000:1 at level 9)."""
    parts = base_parts(path.parent)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in parts.items():
            if name != SHEET:
                zf.writestr(name, data)
        with zf.open(SHEET, "w") as sheet:
            sheet.write(f'{_HEAD}<sheetData>{HEADER_ROW}<row r="2"><c r="A2"><v>213731017</v></c>'
                        '<c r="B2" t="inlineStr"><is><t>'.encode())
            block = b"A" * CHUNK
            for _ in range(inflated // CHUNK):
                sheet.write(block)
            sheet.write(b"A" * (inflated % CHUNK))
            sheet.write(f"</t></is></c>{tail}</row></sheetData></worksheet>".encode())
    return path


def random_text_cell(path: Path, chars: int) -> Path:
    """One cell of random letters: compresses badly, so neither the ratio nor the total size limit sees it."""
    rng = random.Random(1)
    text = "".join(rng.choices(string.ascii_letters, k=chars))
    parts = base_parts(path.parent)
    parts[SHEET] = (f'{_HEAD}<sheetData>{HEADER_ROW}<row r="2"><c r="A2"><v>213731017</v></c>'
                    f'<c r="B2" t="inlineStr"><is><t>{text}</t></is></c></row></sheetData></worksheet>').encode()
    return rezip(path, parts)


def sheet_xml(path: Path, body: str, dimension: str | None = None) -> Path:
    parts = base_parts(path.parent)
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    parts[SHEET] = f"{_HEAD}{dim}<sheetData>{body}</sheetData></worksheet>".encode()
    return rezip(path, parts)


def _patch_central(path: Path, part: str, offset: int, fmt: str, value: int) -> Path:
    """Rewrite one field of ``part``'s central directory entry (what zipfile and openpyxl trust)."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    entries, pos = struct.unpack_from("<H", data, end + 10)[0], struct.unpack_from("<I", data, end + 16)[0]
    for _ in range(entries):
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        if bytes(data[pos + 46:pos + 46 + name_len]) == part.encode():
            struct.pack_into(fmt, data, pos + offset, value)
            path.write_bytes(bytes(data))
            return path
        pos += 46 + name_len + extra_len + comment_len
    raise AssertionError(f"{part} not in the central directory")


def lie_about_size(path: Path, part: str, declared: int) -> Path:
    """``part`` claims to inflate to ``declared`` bytes only."""
    return _patch_central(path, part, 24, "<I", declared)


def mark_encrypted(path: Path, part: str) -> Path:
    """Set the 'encrypted' flag of ``part``, as a zip made with a password has."""
    return _patch_central(path, part, 8, "<H", 0x1)


def minimal_ods(path: Path, rows: list[list[object]], sheet: str = "Deudores") -> Path:
    """An OpenDocument spreadsheet with just what a reader needs (strings and numbers)."""
    def cell(v: object) -> str:
        if isinstance(v, str):
            return f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>'
        return f'<table:table-cell office:value-type="float" office:value="{v}"><text:p>{v}</text:p></table:table-cell>'

    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"')
    body = "".join("<table:table-row>" + "".join(cell(v) for v in r) + "</table:table-row>" for r in rows)
    content = (f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns} office:version="1.2">'
               f'<office:body><office:spreadsheet><table:table table:name="{sheet}">{body}</table:table>'
               "</office:spreadsheet></office:body></office:document-content>")
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
                'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
                '<manifest:file-entry manifest:full-path="/" '
                'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
                '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
                "</manifest:manifest>")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        zf.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        zf.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return path
