"""Stream a sheet's rows from ``.xlsx`` (openpyxl read-only) or ``.csv`` (sniffed), one tuple at a time.

The kind of file is told by its content, not its name. Bad files fail here with an
``UnreadableFileError`` that says what the file is, so the operator is never shown a zipfile, XML or
codec traceback; files over a size limit (``speechai.loader.limits``) fail with a ``LimitError`` naming it,
before their content is in memory: workbooks through ``zipguard``, CSV files by size and by record.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import ParseError

from openpyxl.reader.excel import ExcelReader
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.workbook.workbook import Workbook

from speechai.loader.columns import header_score
from speechai.loader.errors import LimitError, UnreadableFileError
from speechai.loader.limits import DEFAULT_LIMITS, MAX_CSV_RECORD_CHARS, MAX_HEADER_CHARS, Limits, mib
from speechai.loader.normalize import cell_text, is_blank
from speechai.loader.zipguard import GuardedZip, inflate_all, open_archive

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first part, or an empty zip's directory
_ENCRYPTED_MARK = "EncryptionInfo".encode("utf-16-le")
_ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
HEADER_SCAN_ROWS = 10  # title rows above the header are common in exports
# openpyxl streams a sheet; it is the reader for operator files. calamine (Rust; also .xls/.ods) reads
# about 3 times faster and gives the same rows, but builds each sheet as a dense grid from its extreme
# cell references: a 1 KB workbook with cells A1 and XFD1048576 makes it allocate 512 GB and abort the
# process (no exception). It is only used when asked for (benchmarks, comparisons) until the extent
# of a sheet is checked before it parses.
READERS = ("openpyxl", "calamine")
DEFAULT_READER = "openpyxl"
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


def _check_package(archive: GuardedZip, name: str, ods: bool) -> None:
    """An Office Open XML package, or (``ods``: when the reader can read it) an OpenDocument one."""
    names = set(archive.namelist())
    if "[Content_Types].xml" in names:
        return
    if "mimetype" in names and archive.read("mimetype").startswith(_ODS_MIME):
        if ods:
            return
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
    """calamine parses a whole sheet at once, so the limits are all checked before it starts: a zip's
    parts are inflated once through the guard (directory, sizes, ratio, text runs; output discarded);
    an .xls (not compressed) is held to the decompressed-size limit by its file size. Not the extent
    of a sheet: see READERS."""
    from python_calamine import CalamineError, CalamineWorkbook  # only this reader needs it

    with path.open("rb") as file:
        if kind == "xlsx":
            with open_archive(file, path.name, limits) as archive:
                _check_package(archive, path.name, ods=True)
                try:
                    inflate_all(archive)
                except _BROKEN_XLSX as exc:
                    raise _damaged(path.name, exc) from None
            file.seek(0)
        elif (size := path.stat().st_size) > limits.max_unzipped_bytes:
            raise LimitError(f"{path.name} is {mib(size)}; the limit for a workbook is "
                             f"{mib(limits.max_unzipped_bytes)}")
        try:
            wb = CalamineWorkbook.from_filelike(file)
            ws = wb.get_sheet_by_name(_pick_sheet(path.name, wb.sheet_names, sheet))
        except (CalamineError, *_BROKEN_XLSX) as exc:
            raise _calamine_damaged(path.name, kind, exc) from None
    # iter_rows (python-calamine 0.9) starts at row 1 but at the first used column: pad that back.
    left = (None,) * (ws.start[1] if ws.start else 0)
    total = ws.end[0] + 1 if ws.end and ws.end[0] >= 1 else None

    def rows() -> Iterator[tuple[int, Row]]:
        try:
            for n, values in enumerate(ws.iter_rows(), start=1):
                if n > limits.max_rows:
                    raise LimitError(f"{path.name} has more than {limits.max_rows:,} rows "
                                     "(the loader's limit, Excel's own)")
                yield n, left + tuple(_calamine_value(v) for v in values)
        except (CalamineError, *_BROKEN_XLSX) as exc:
            raise _calamine_damaged(path.name, kind, exc) from None

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
