"""Stream a sheet's rows from ``.xlsx`` (openpyxl read-only) or ``.csv`` (sniffed), one tuple at a time.

Bad files fail here with an ``UnreadableFileError`` that says what the file is, so the operator is
never shown a zipfile or codec traceback.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from speechai.loader.columns import header_score
from speechai.loader.errors import UnreadableFileError
from speechai.loader.normalize import cell_text, is_blank

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_MARK = "EncryptionInfo".encode("utf-16-le")
HEADER_SCAN_ROWS = 10  # title rows above the header are common in exports
Row = tuple[object, ...]


@dataclass
class Sheet:
    header_row: int  # 1-based row number of the header
    headers: list[str]
    rows: Iterator[tuple[int, Row]]  # (1-based row number, cells) after the header
    total_rows: int | None  # an estimate for progress bars, when the file tells it


def _sniff_kind(path: Path) -> str:
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
        raise UnreadableFileError(f"{path.name} is an old-format .xls workbook; save it as .xlsx or .csv")
    if head.startswith(b"PK"):
        return "xlsx"
    if suffix in (".xlsx", ".xlsm"):
        raise UnreadableFileError(f"{path.name} is not a valid .xlsx workbook (it is not a zip package)")
    if suffix in (".csv", ".txt"):
        if b"\x00" in head:
            raise UnreadableFileError(f"{path.name} is not a text CSV file (it contains binary data)")
        return "csv"
    raise UnreadableFileError(f"{path.name}: unsupported file type {suffix or '(none)'}; use .xlsx or .csv")


@contextmanager
def open_sheet(path: Path, sheet: str | None = None) -> Iterator[Sheet]:
    kind = _sniff_kind(path)
    if kind == "xlsx":
        with _open_xlsx(path, sheet) as (rows, total):
            yield _with_header(path, rows, total)
    else:
        with _open_csv(path) as rows:
            yield _with_header(path, rows, None)


@contextmanager
def _open_xlsx(path: Path, sheet: str | None) -> Iterator[tuple[Iterator[tuple[int, Row]], int | None]]:
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise UnreadableFileError(f"{path.name} is not a readable .xlsx workbook ({exc})") from None
    try:
        if sheet is not None:
            if sheet not in wb.sheetnames:
                raise UnreadableFileError(
                    f"{path.name} has no sheet {sheet!r}; sheets: {', '.join(wb.sheetnames)}")
            ws = wb[sheet]
        else:
            ws = wb.worksheets[0]
        total = ws.max_row if isinstance(ws.max_row, int) and ws.max_row > 1 else None

        def rows() -> Iterator[tuple[int, Row]]:
            try:
                yield from enumerate(ws.iter_rows(values_only=True), start=1)
            except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
                raise UnreadableFileError(f"{path.name} is damaged: {exc}") from None

        yield rows(), total
    finally:
        wb.close()


def _decode(path: Path) -> io.TextIOBase:
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


@contextmanager
def _open_csv(path: Path) -> Iterator[Iterator[tuple[int, Row]]]:
    f = _decode(path)
    try:
        sample = f.read(16384)
        f.seek(0)
        try:
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=";,\t|")
        except csv.Error:
            dialect = csv.excel  # one column, or too little text to tell

        def rows() -> Iterator[tuple[int, Row]]:
            try:
                for n, values in enumerate(csv.reader(f, dialect), start=1):
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
    headers = [cell_text(v) for v in header_values]
    rest = buffered[pick + 1:]

    def after() -> Iterator[tuple[int, Row]]:
        yield from rest
        yield from rows

    return Sheet(header_no, headers, after(), total)


def estimate_rows(path: Path, sheet: str | None = None) -> int | None:
    """Data rows a file holds, cheaply (for progress bars); None when it cannot tell."""
    try:
        kind = _sniff_kind(path)
        if kind == "csv":
            with path.open("rb") as f:
                return max(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1, 0)
        with _open_xlsx(path, sheet) as (_, total):
            return total - 1 if total else None
    except (UnreadableFileError, OSError):
        return None
