"""A sheet's rows, one tuple at a time: workbooks (``.xlsx``, ``.xls``, ``.ods``) through calamine, an ``.xlsx``
in chunks of rows (or openpyxl read-only, on request), ``.csv`` through the csv module (sniffed).

The kind of file is told by its content, not its name. Bad files fail here with an
``UnreadableFileError`` that says what the file is, so the operator is never shown a zipfile, XML or
codec traceback; files over a size limit (``speechai.loader.limits``) fail with a ``LimitError`` naming it,
before their content is in memory: workbooks through ``zipguard``, CSV files by size and by record.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree
from xml.etree.ElementTree import ParseError

from openpyxl.reader.excel import ExcelReader
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.workbook.workbook import Workbook

from speechai.loader.columns import header_score
from speechai.loader.errors import LimitError, UnreadableFileError
from speechai.loader.limits import DEFAULT_LIMITS, MAX_CSV_RECORD_CHARS, MAX_HEADER_CHARS, Limits, mib
from speechai.loader.normalize import cell_text, is_blank
from speechai.loader.zipguard import (
    _DATA_OPEN,
    ExtentScan,
    GuardedZip,
    SheetExtent,
    inflate_all,
    last_row_end,
    open_archive,
)

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first part, or an empty zip's directory
_ENCRYPTED_MARK = "EncryptionInfo".encode("utf-16-le")
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
HEADER_SCAN_ROWS = 10  # title rows above the header are common in exports
# calamine (Rust; also .xls/.ods) is the reader for operator files: several times faster than openpyxl, same
# rows. It builds a sheet as a dense grid between its extreme cell references (a 1 KB workbook with cells A1
# and XFD1048576 would make it allocate 512 GB and abort the process), so the guard's scan measures each
# sheet's extent first and refuses one over ``max_sheet_cells``. openpyxl (streaming) is kept for comparison
# and for the cheap row estimate of progress bars.
READERS = ("openpyxl", "calamine")
DEFAULT_READER = "calamine"
# calamine holds what it parses whole (sparse cells, then the dense grid, then Python lists): an .xlsx sheet is
# given to it in chunks of whole rows spanning at most this many grid cells (or bytes of XML) at a time.
CHUNK_CELLS = 220_000
CHUNK_BYTES = 16 * 2**20
Row = tuple[object, ...]
# What openpyxl and zipfile raise on a malformed package or XML (truncated, wrong types, bad references).
_BROKEN_XLSX = (zipfile.BadZipFile, ParseError, InvalidFileException, KeyError, ValueError, TypeError,
                AttributeError, IndexError, EOFError, OSError, zlib.error, NotImplementedError, RuntimeError)

# The csv module refuses fields over 128 KiB by default; records are bounded by _RecordLines instead.
if csv.field_size_limit() < MAX_CSV_RECORD_CHARS:
    csv.field_size_limit(MAX_CSV_RECORD_CHARS)


@dataclass
class Sheet:
    header_row: int  # 1-based row number of the header
    headers: list[str]
    rows: Iterator[tuple[int, Row]]  # (1-based row number, cells) after the header
    total_rows: int | None  # an estimate for progress bars, when the file tells it


def _sniff_kind(path: Path) -> str:
    """'xlsx' (any zip), 'xls' (an OLE file) or 'csv' by the file's content; the name only decides what
    text content may be."""
    suffix = path.suffix.lower()
    try:
        with path.open("rb") as f:
            head = f.read(65536)
    except OSError as exc:
        raise UnreadableFileError(f"cannot open {path.name}: {exc.strerror or exc}") from None
    if not head:
        raise UnreadableFileError(f"{path.name} is empty (0 bytes)")
    if head.startswith(_OLE_MAGIC):
        if _ENCRYPTED_MARK in head or suffix in (".xlsx", ".xlsm"):
            raise UnreadableFileError(
                f"{path.name} is password-protected (encrypted); save it again without a password")
        return "xls"
    if head.startswith(_ZIP_MAGIC):
        return "xlsx"  # also under a .csv name: an Excel workbook is read as one whatever it is called
    if suffix in (".xlsx", ".xlsm"):
        raise UnreadableFileError(f"{path.name} is not a valid .xlsx workbook (it is not a zip package)")
    if suffix in (".csv", ".txt"):
        if b"\x00" in head:
            raise UnreadableFileError(f"{path.name} is not a text CSV file (it contains binary data)")
        return "csv"
    raise UnreadableFileError(f"{path.name}: unsupported file type {suffix or '(none)'}; use .xlsx or .csv")


@contextmanager
def open_sheet(path: Path, sheet: str | None = None, limits: Limits = DEFAULT_LIMITS,
               reader: str = DEFAULT_READER) -> Iterator[Sheet]:
    kind = _sniff_kind(path)
    if kind == "csv":
        with _open_csv(path, limits) as rows:
            yield _with_header(path, rows, None)
        return
    if reader not in READERS:
        raise ValueError(f"reader {reader!r} is not one of {', '.join(READERS)}")
    if reader == "calamine":
        opened = _open_calamine(path, kind, sheet, limits)
    elif kind == "xls":
        raise UnreadableFileError(f"{path.name} is an old-format .xls workbook; save it as .xlsx or .csv")
    else:
        opened = _open_xlsx(path, sheet, limits)
    with opened as (rows, total):
        yield _with_header(path, rows, total)


def _damaged(name: str, exc: BaseException) -> UnreadableFileError:
    if isinstance(exc, ParseError):
        why = f"its XML is cut short or malformed ({exc})"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return UnreadableFileError(f"{name} is a damaged workbook and cannot be read: {why}")


def _check_package(archive: GuardedZip, name: str, ods: bool) -> bool:
    """An Office Open XML package (False), or (``ods``: when the reader can read it) an OpenDocument one (True)."""
    names = set(archive.namelist())
    if "[Content_Types].xml" in names:
        return False
    if "mimetype" in names and archive.read("mimetype").startswith(_ODS_MIME):
        if ods:
            return True
        raise UnreadableFileError(f"{name} is an OpenDocument spreadsheet (.ods); save it as .xlsx or .csv")
    raise UnreadableFileError(f"{name} is a zip file but not an Excel workbook (no [Content_Types].xml)")


def _load_workbook(file: IO[bytes], archive: GuardedZip, name: str) -> Workbook:
    """openpyxl's reader on the guarded archive: every part it reads goes through the limits."""
    _check_package(archive, name, ods=False)
    # A file object, not a path: openpyxl would refuse a workbook by its name (an .xlsx renamed .csv).
    reader = ExcelReader(file, read_only=True, data_only=True, keep_links=False)
    reader.archive.close()
    reader.archive = archive
    reader.valid_files = archive.namelist()
    reader.read()
    return reader.wb


@contextmanager
def _open_xlsx(path: Path, sheet: str | None,
               limits: Limits) -> Iterator[tuple[Iterator[tuple[int, Row]], int | None]]:
    with path.open("rb") as file:
        archive = open_archive(file, path.name, limits)
        try:
            wb = _load_workbook(file, archive, path.name)
        except _BROKEN_XLSX as exc:
            archive.close()
            raise _damaged(path.name, exc) from None
        except BaseException:
            archive.close()
            raise
        try:
            if sheet is not None:
                if sheet not in wb.sheetnames:
                    raise UnreadableFileError(
                        f"{path.name} has no sheet {sheet!r}; sheets: {', '.join(wb.sheetnames)}")
                ws = wb[sheet]
            else:
                if not wb.worksheets:
                    raise UnreadableFileError(f"{path.name} has no worksheet")
                ws = wb.worksheets[0]
            total = ws.max_row if isinstance(ws.max_row, int) and ws.max_row > 1 else None
            # Rows as the file holds them, not padded to the declared <dimension>: a hostile one
            # (A1:XFD1048576) would otherwise turn each row into 16,384 cells.
            ws.reset_dimensions()

            def rows() -> Iterator[tuple[int, Row]]:
                try:
                    for n, values in enumerate(ws.iter_rows(values_only=True), start=1):
                        if n > limits.max_rows:
                            raise LimitError(f"{path.name} has more than {limits.max_rows:,} rows "
                                             "(the loader's limit, Excel's own)")
                        yield n, tuple(values)
                except _BROKEN_XLSX as exc:
                    raise _damaged(path.name, exc) from None

            yield rows(), total
        finally:
            wb.close()


def _pick_sheet(name: str, sheets: list[str], wanted: str | None) -> str:
    if not sheets:
        raise UnreadableFileError(f"{name} has no worksheet")
    if wanted is None:
        return sheets[0]
    if wanted not in sheets:
        raise UnreadableFileError(f"{name} has no sheet {wanted!r}; sheets: {', '.join(sheets)}")
    return wanted


def _calamine_value(value: object) -> object:
    """A calamine cell typed as openpyxl types it (the normalisers and the tests expect one typing)."""
    if value == "":
        return None  # calamine's empty cell
    if type(value) is float and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if type(value) is date:
        return datetime(value.year, value.month, value.day)
    return value


@contextmanager
def _open_calamine(path: Path, kind: str, sheet: str | None,
                   limits: Limits) -> Iterator[tuple[Iterator[tuple[int, Row]], int | None]]:
    """Every limit is checked before calamine parses: a zip's parts are inflated once through the guard
    (directory, sizes, ratio, text runs; output discarded), which also measures each sheet's extent (its
    <dimension> and its cell references, against ``max_sheet_cells``); an .xls (not compressed) is held to the
    decompressed-size limit by its file size. An .xlsx sheet is then handed to calamine in chunks of rows
    (``CHUNK_CELLS``), so memory stays bounded whatever the number of rows."""
    with path.open("rb") as file:
        if kind != "xlsx":
            if (size := path.stat().st_size) > limits.max_unzipped_bytes:
                raise LimitError(f"{path.name} is {mib(size)}; the limit for a workbook is "
                                 f"{mib(limits.max_unzipped_bytes)}")
            with _calamine_whole(file, path.name, kind, sheet, limits) as opened:
                yield opened
            return
        with open_archive(file, path.name, limits) as archive:
            ods = _check_package(archive, path.name, ods=True)
            try:
                extents = inflate_all(archive)
                book = None if ods else _book_parts(archive)
            except _BROKEN_XLSX as exc:
                raise _damaged(path.name, exc) from None
            if book is not None:
                name = _pick_sheet(path.name, list(book.sheets), sheet)
                extent = extents.get(book.sheets[name])
                if extent is not None and extent.cuttable and extent.data_start >= 0:
                    yield _chunked_rows(archive, book, name, extent, path.name, limits), _total(extent.rows)
                    return
        file.seek(0)
        with _calamine_whole(file, path.name, kind, sheet, limits) as opened:
            yield opened


def _total(last_row: int) -> int | None:
    return last_row if last_row > 1 else None


@dataclass
class _Book:
    sheets: dict[str, str]  # worksheet name -> its part, in workbook order
    shared: dict[str, bytes]  # the parts calamine needs besides the sheet (workbook, relations, strings, styles)


_REL_TYPES_KEPT = ("/styles", "/sharedStrings")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _book_parts(archive: GuardedZip) -> _Book | None:
    """Worksheet names and parts from workbook.xml and its relations (read through the guard); None when the
    package is laid out otherwise (calamine then reads it whole, or says what is wrong)."""
    names = set(archive.namelist())
    book_part = "xl/workbook.xml"  # where calamine looks for it
    if book_part not in names:
        return None
    rels_part = posixpath.join(posixpath.dirname(book_part), "_rels", posixpath.basename(book_part) + ".rels")
    targets: dict[str, tuple[str, str]] = {}
    for rel in ElementTree.fromstring(archive.read(rels_part)).iter() if rels_part in names else ():
        if _local(rel.tag) == "Relationship":
            target = rel.get("Target", "")
            target = target.lstrip("/") if target.startswith("/") else posixpath.normpath(
                posixpath.join(posixpath.dirname(book_part), target))
            targets[rel.get("Id", "")] = (target, rel.get("Type", ""))
    sheets: dict[str, str] = {}
    for el in ElementTree.fromstring(archive.read(book_part)).iter():
        if _local(el.tag) == "sheet":
            rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), "")
            target, kind = targets.get(rid, ("", ""))
            if kind.endswith("/worksheet") and el.get("name"):
                sheets[el.get("name", "")] = target
    kept = ["[Content_Types].xml", "_rels/.rels", book_part, rels_part]
    kept += [t for t, kind in targets.values() if kind.endswith(_REL_TYPES_KEPT)]
    return _Book(sheets, {part: archive.read(part) for part in dict.fromkeys(kept) if part in names})


def _typed_row(values: list[object], left: Row) -> Row:
    # Strings are most cells: kept as they are ('' is calamine's empty cell); whole floats (the next most
    # common) become ints as openpyxl gives them; the rest typed by _calamine_value.
    return left + tuple([(v or None) if type(v) is str
                         else int(v) if type(v) is float and v.is_integer() and -2**53 < v < 2**53  # type: ignore[operator]
                         else _calamine_value(v) for v in values])


def _chunked_rows(archive: GuardedZip, book: _Book, name: str, extent: SheetExtent, file_name: str,
                  limits: Limits) -> Iterator[tuple[int, Row]]:
    """The sheet's rows, each chunk of rows parsed by calamine as a small workbook of its own, one at a time.
    (A worker thread parsing the next chunk during validation was tried: no faster on 2 busy cores, and it
    holds two chunks.)"""
    from python_calamine import CalamineError

    try:
        for doc in _sheet_chunks(archive, book.sheets[name], extent, file_name):
            parsed = _parse_chunk(book, name, doc)
            del doc
            yield from _chunk_rows(*parsed, file_name, limits)
            del parsed
    except (CalamineError, *_BROKEN_XLSX) as exc:
        raise _calamine_damaged(file_name, "xlsx", exc) from None


def _chunk_rows(start: tuple[int, int] | None, grid: list[list[Any]], file_name: str,
                limits: Limits) -> Iterator[tuple[int, Row]]:
    if start is None:
        return
    left = (None,) * start[1]
    grid.reverse()  # popped from the end: each row's list is freed once it is typed
    n = start[0]
    while grid:
        n += 1
        if n > limits.max_rows:
            raise LimitError(f"{file_name} has more than {limits.max_rows:,} rows (the loader's limit, Excel's own)")
        yield n, _typed_row(grid.pop(), left)


def _parse_chunk(book: _Book, name: str, doc: bytes) -> tuple[tuple[int, int] | None, list[list[Any]]]:
    """(top-left position, rows) of one chunk, given to calamine as a workbook of its own (stored, not
    compressed); calamine's copy of it is dropped before the rows are used."""
    from python_calamine import CalamineWorkbook

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
        for part, data in book.shared.items():
            out.writestr(part, data)
        out.writestr(book.sheets[name], doc)
    del doc  # the zip holds the only copy
    buffer.seek(0)
    with CalamineWorkbook.from_filelike(buffer) as wb:
        ws = wb.get_sheet_by_name(name)
        start = ws.start
        grid = ws.to_python(skip_empty_area=True) if start else []
        del ws
    return start, grid


_ROOT = re.compile(rb"<((?:[\w.-]+:)?worksheet)\b[^>]*>")
_DECLARATION = re.compile(rb"<\?xml[^>]*\?>")


def _sheet_chunks(archive: zipfile.ZipFile, part: str, extent: SheetExtent, file_name: str) -> Iterator[bytes]:
    """The sheet re-read and cut at the scan's block ends into documents of whole rows, each spanning at most
    ``CHUNK_CELLS`` cells of calamine's grid (or one block). The guard's checks are not repeated: this inflates
    the bytes the scan has just checked (zipfile verifies their CRC again)."""
    cols = max(extent.cols, 1)
    with zipfile.ZipFile.open(archive, part) as stream:
        prologue = stream.read(extent.data_start)
        while len(prologue) < extent.data_start and (more := stream.read(extent.data_start - len(prologue))):
            prologue += more
        root = _ROOT.search(prologue)
        data_open = _DATA_OPEN.search(prologue)
        if root is None or data_open is None:
            raise UnreadableFileError(f"{file_name} is a damaged workbook: sheet {part} has no worksheet "
                                      "element around its rows")
        declaration = _DECLARATION.match(prologue)
        prefix = data_open.group(0)[1:data_open.group(0).index(b"sheetData")]
        head = (declaration.group(0) if declaration else b"") + root.group(0) + b"<" + prefix + b"sheetData>"
        tail = b"</" + prefix + b"sheetData></" + root.group(1) + b">"
        del prologue
        position = extent.data_start
        pieces: list[bytes] = []
        size = lo = hi = 0
        for block in extent.blocks:
            end = min(block.end, extent.data_end)
            if end <= position:
                continue
            data = _read_exactly(stream, end - position)
            position = end
            parts = [(data, block.first_row, block.last_row)]
            if block.first_row and (block.last_row - block.first_row + 1) * cols > CHUNK_CELLS:
                parts = list(_split_rows(data, cols, part, file_name))  # far-apart rows in one block
            del data
            for piece, first, last in parts:
                if first:
                    grown_lo, grown_hi = (min(lo, first), max(hi, last)) if lo else (first, last)
                    if pieces and lo and ((grown_hi - grown_lo + 1) * cols > CHUNK_CELLS or size >= CHUNK_BYTES):
                        doc, pieces = b"".join([head, *pieces, tail]), []  # one copy of the rows held, not two
                        yield doc
                        del doc
                        size, grown_lo, grown_hi = 0, first, last
                    lo, hi = grown_lo, grown_hi
                pieces.append(piece)
                size += len(piece)
        if pieces:
            doc, pieces = b"".join([head, *pieces, tail]), []
            yield doc


def _split_rows(data: bytes, cols: int, part: str, file_name: str) -> Iterator[tuple[bytes, int, int]]:
    """A block's rows in pieces of whole rows, each spanning at most ``CHUNK_CELLS`` cells, with their spans."""
    scan = ExtentScan(part, file_name, DEFAULT_LIMITS)
    first, last = scan.span(data)
    if not first or (last - first + 1) * cols <= CHUNK_CELLS:
        yield data, first, last
        return
    cut = last_row_end(data, 0, len(data) // 2 + 4)
    if cut <= 0 or cut >= len(data):
        cut = last_row_end(data, 0, len(data) - 1)
    if cut <= 0 or cut >= len(data):
        raise LimitError(f"{file_name}: a row of sheet {part} has cells in rows {first:,} to {last:,}; the loader "
                         f"reads at most {CHUNK_CELLS:,} cells at a time")
    yield from _split_rows(data[:cut], cols, part, file_name)
    yield from _split_rows(data[cut:], cols, part, file_name)


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    chunks = []
    while n > 0 and (data := stream.read(min(n, 1 << 20))):
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


@contextmanager
def _calamine_whole(file: IO[bytes], name: str, kind: str, sheet: str | None,
                    limits: Limits) -> Iterator[tuple[Iterator[tuple[int, Row]], int | None]]:
    """calamine on a whole sheet (.xls, .ods, an .xlsx sheet whose rows cannot be cut apart): all of it in
    memory at once, bounded by the extent check (.xlsx) or by the format's own grid (.xls: 65,536 x 256)."""
    from python_calamine import CalamineError, CalamineWorkbook  # only this reader needs it

    try:
        wb = CalamineWorkbook.from_filelike(file)
        ws = wb.get_sheet_by_name(_pick_sheet(name, wb.sheet_names, sheet))
    except (CalamineError, *_BROKEN_XLSX) as exc:
        raise _calamine_damaged(name, kind, exc) from None
    # iter_rows (python-calamine 0.9) starts at row 1 but at the first used column: pad that back.
    left = (None,) * (ws.start[1] if ws.start else 0)
    total = ws.end[0] + 1 if ws.end and ws.end[0] >= 1 else None

    def rows() -> Iterator[tuple[int, Row]]:
        try:
            for n, values in enumerate(ws.iter_rows(), start=1):
                if n > limits.max_rows:
                    raise LimitError(f"{name} has more than {limits.max_rows:,} rows "
                                     "(the loader's limit, Excel's own)")
                yield n, _typed_row(values, left)
        except (CalamineError, *_BROKEN_XLSX) as exc:
            raise _calamine_damaged(name, kind, exc) from None

    try:
        yield rows(), total
    finally:
        wb.close()


def _calamine_damaged(name: str, kind: str, exc: BaseException) -> UnreadableFileError:
    from python_calamine import XmlError

    if "password" in str(exc).lower() or "encrypt" in str(exc).lower():
        return UnreadableFileError(f"{name} is password-protected (encrypted); save it again without a password")
    if kind == "xls":
        return UnreadableFileError(f"{name} is an old-format .xls workbook that cannot be read: {exc}")
    why = f"its XML is cut short or malformed ({exc})" if isinstance(exc, XmlError) else f"{type(exc).__name__}: {exc}"
    return UnreadableFileError(f"{name} is a damaged workbook and cannot be read: {why}")


def _decode(path: Path) -> io.TextIOWrapper:
    raw = path.open("rb")
    sample = raw.read(65536)
    raw.seek(0)
    try:
        sample.decode("utf-8-sig")
        encoding = "utf-8-sig"
    except UnicodeDecodeError as exc:
        # A multibyte character cut by the sample's end is still UTF-8.
        encoding = "utf-8-sig" if exc.start >= len(sample) - 3 else "latin-1"
    return io.TextIOWrapper(raw, encoding=encoding, newline="")


class _RecordLines:
    """The lines fed to ``csv.reader``, refusing a record (one row, however many lines) over the limit."""

    def __init__(self, f: io.TextIOWrapper, name: str, limit: int) -> None:
        self.f = f
        self.name = name
        self.limit = limit
        self.record_chars = 0  # reset by the caller after each record

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(self.limit + 1)  # never more than the limit in memory
        if not line:
            raise StopIteration
        self.record_chars += len(line)
        if self.record_chars > self.limit:
            raise LimitError(f"{self.name} has a row of more than {self.limit:,} characters (the loader's limit "
                             "for one CSV row)")
        return line


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    # Whole lines only: a long cell cut by the sample's end would confuse the sniffer.
    if "\n" in sample.rstrip("\r\n"):
        sample = sample[:sample.rstrip("\r\n").rfind("\n") + 1]
    try:
        return csv.Sniffer().sniff(sample, delimiters=";,\t|")
    except csv.Error:
        pass
    first = sample.splitlines()[0] if sample else ""
    counts = {d: first.count(d) for d in ";,\t|"}
    best = max(counts, key=counts.__getitem__)
    if counts[best] == 0:
        return csv.excel  # one column
    return type("_Guessed", (csv.excel,), {"delimiter": best})


@contextmanager
def _open_csv(path: Path, limits: Limits) -> Iterator[Iterator[tuple[int, Row]]]:
    size = path.stat().st_size
    if size > limits.max_csv_bytes:
        raise LimitError(f"{path.name} is {mib(size)}; the limit for a CSV file is {mib(limits.max_csv_bytes)}")
    f = _decode(path)
    try:
        sample = f.read(16384)
        f.seek(0)
        dialect = _dialect(sample)
        lines = _RecordLines(f, path.name, limits.max_csv_record_chars)

        def rows() -> Iterator[tuple[int, Row]]:
            try:
                for n, values in enumerate(csv.reader(lines, dialect), start=1):
                    if n > limits.max_rows:
                        raise LimitError(f"{path.name} has more than {limits.max_rows:,} rows (the loader's limit)")
                    lines.record_chars = 0
                    yield n, tuple(values)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise UnreadableFileError(f"{path.name} is not a readable CSV file: {exc}") from None

        yield rows()
    finally:
        f.close()


def _with_header(path: Path, rows: Iterator[tuple[int, Row]], total: int | None) -> Sheet:
    """The header is the most header-like of the first non-empty rows (ties: the earliest)."""
    buffered: list[tuple[int, Row]] = []
    for n, values in rows:
        if all(is_blank(v) for v in values):
            continue
        buffered.append((n, values))
        if len(buffered) >= HEADER_SCAN_ROWS:
            break
    if not buffered:
        raise UnreadableFileError(f"{path.name} has no rows: the sheet is empty")
    scores = [header_score([cell_text(v) for v in values]) for _, values in buffered]
    pick = scores.index(max(scores))
    header_no, header_values = buffered[pick]
    headers = [_clip(cell_text(v)) for v in header_values]
    rest = buffered[pick + 1:]

    def after() -> Iterator[tuple[int, Row]]:
        yield from rest
        yield from rows

    return Sheet(header_no, headers, after(), total)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_HEADER_CHARS else text[:MAX_HEADER_CHARS] + "…"


def estimate_rows(path: Path, sheet: str | None = None, limits: Limits = DEFAULT_LIMITS) -> int | None:
    """Data rows a file holds, cheaply (for progress bars); None when it cannot tell."""
    try:
        kind = _sniff_kind(path)
        if kind == "xls":
            return None
        if kind == "csv":
            if path.stat().st_size > limits.max_csv_bytes:
                return None
            with path.open("rb") as f:
                return max(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1, 0)
        with _open_xlsx(path, sheet, limits) as (_, total):
            return total - 1 if total else None
    except (UnreadableFileError, OSError):
        return None
