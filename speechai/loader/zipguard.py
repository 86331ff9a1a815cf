"""A workbook's zip opened under the loader's limits: checked before parsing, capped while reading.

``open_archive`` refuses, from the zip's directory alone, a package with too many parts, parts that
would inflate past ``max_unzipped_bytes`` in all, or a large part compressed more than ``max_ratio``:1
(a zip bomb). ``GuardedZip.open`` then hands every reader (openpyxl included) a stream that counts the
bytes it really inflates, against the same total and against the part's declared size, and that stops
at the first text run longer than ``max_xml_run_bytes`` or a sheet row with more than
``max_tags_per_row`` tags: one huge cell is refused after its first MiB, not after it is in memory.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

from speechai.loader.errors import LimitError, UnreadableFileError
from speechai.loader.limits import Limits, mib

_READ_CHUNK = 64 * 1024
_ROW_NAME = re.compile(rb"row[\s/>]")  # a literal: found fast, then checked for the '<' (and prefix) before it
_ROW_OPENING = re.compile(rb"/?(?:[A-Za-z_][\w.-]*:)?")
_SHEET_PART = re.compile(r"(^|/)worksheets/[^/]+\.xml$")
_ENCRYPTED_FLAG = 0x1


class _Budget:
    """Bytes inflated across all parts of one workbook (a part read twice counts once: openpyxl reads a
    sheet once for its dimensions, and again for its rows)."""

    def __init__(self, file_name: str, limits: Limits) -> None:
        self.file_name = file_name
        self.limits = limits
        self.used = 0
        self._parts: dict[str, int] = {}

    def reached(self, part: str, read: int) -> None:
        before = self._parts.get(part, 0)
        if read <= before:
            return
        self._parts[part] = read
        self.used += read - before
        if self.used > self.limits.max_unzipped_bytes:
            raise LimitError(f"{self.file_name} inflates to more than {mib(self.limits.max_unzipped_bytes)} "
                             "when unzipped (the limit for a workbook's decompressed size)")


class _GuardedPart(io.RawIOBase):
    """One part's inflated bytes, counted and scanned as they are read."""

    def __init__(self, raw: IO[bytes], part: str, declared: int, budget: _Budget) -> None:
        super().__init__()
        self._raw = raw
        self._part = part
        self._declared = declared
        self._budget = budget
        self._read = 0
        self._scan = part.endswith((".xml", ".rels", ".vml"))
        self._rows = bool(_SHEET_PART.search(part))
        self._run = 0  # bytes since the last '<' or '>'
        self._tags = 0  # tags since the last row tag

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Chunks no longer than the run limit: a run inside one chunk never needs checking.
        data = self._raw.read(min(len(buffer), _READ_CHUNK, self._budget.limits.max_xml_run_bytes))
        self._check(data)
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()

    def _check(self, data: bytes) -> None:
        self._read += len(data)
        if self._read > self._declared:
            raise LimitError(f"{self._budget.file_name} is damaged or hostile: part {self._part} inflates past "
                             f"the {self._declared:,} bytes its zip directory declares")
        self._budget.reached(self._part, self._read)
        if self._scan:
            self._scan_runs(data)
        if self._rows:
            self._count_tags(data)

    def _scan_runs(self, data: bytes) -> None:
        first = min((i for i in (data.find(b"<"), data.find(b">")) if i >= 0), default=-1)
        if first < 0:
            self._run += len(data)
        else:
            self._run += first  # runs inside the chunk are shorter than the chunk, hence than the limit
            self._check_run()
            self._run = len(data) - 1 - max(data.rfind(b"<"), data.rfind(b">"))
        self._check_run()

    def _check_run(self) -> None:
        limit = self._budget.limits.max_xml_run_bytes
        if self._run > limit:
            raise LimitError(f"{self._budget.file_name}: part {self._part} holds a cell or tag of more than "
                             f"{mib(limit)} of text (the loader's limit; Excel's own is 32,767 characters "
                             "per cell)")

    def _count_tags(self, data: bytes) -> None:
        # A row tag split across two chunks is missed: that row then counts as longer, never shorter.
        total = data.count(b"<")
        if self._tags + total <= self._budget.limits.max_tags_per_row:
            # No row of this block can pass the limit: only what follows its last row tag is carried on,
            # counted from the last unprefixed one found (from an earlier place, or the block's start,
            # when the last is prefixed: never fewer than the row really has).
            last = _last_row_tag(data)
            self._tags = data.count(b"<", last + 1) if last >= 0 else self._tags + total
            return
        start = 0
        for m in _ROW_NAME.finditer(data):
            lt = data.rfind(b"<", max(start, m.start() - 64), m.start())
            if lt < 0 or not _ROW_OPENING.fullmatch(data, lt + 1, m.start()):
                continue  # 'row' in a text, or in another tag's name ('arrow')
            self._tags += data.count(b"<", start, lt)
            self._check_tags()
            self._tags, start = 0, lt + 1
        self._tags += data.count(b"<", start)
        self._check_tags()

    def _check_tags(self) -> None:
        limit = self._budget.limits.max_tags_per_row
        if self._tags > limit:
            raise LimitError(f"{self._budget.file_name}: a row of {self._part} has more than {limit:,} tags "
                             "(the loader's limit; Excel allows 16,384 columns)")


def _last_row_tag(data: bytes) -> int:
    """Index of the '<' of the block's last unprefixed row tag (opening or closing); -1 if none."""
    best = -1
    for tag in (b"<row", b"</row"):
        end = len(data)
        while (i := data.rfind(tag, 0, end)) >= 0:
            if data[i + len(tag): i + len(tag) + 1] in (b" ", b"\t", b"\r", b"\n", b"/", b">"):
                best = max(best, i)
                break
            end = i
    return best


class GuardedZip(zipfile.ZipFile):
    """A read-only ``ZipFile`` whose ``open`` (and so ``read``) returns guarded streams."""

    def __init__(self, file: IO[bytes], file_name: str, limits: Limits) -> None:
        super().__init__(file, "r")
        self._budget = _Budget(file_name, limits)
        self.file_name = file_name
        self.limits = limits

    def open(self, name: str | zipfile.ZipInfo, mode: str = "r", pwd: bytes | None = None, *,
             force_zip64: bool = False) -> IO[bytes]:
        raw = super().open(name, mode, pwd, force_zip64=force_zip64)
        if mode != "r":
            return raw
        info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        return _GuardedPart(raw, info.filename, info.file_size, self._budget)  # type: ignore[return-value]


def open_archive(file: IO[bytes], file_name: str, limits: Limits) -> GuardedZip:
    """The workbook's zip, refused before any part is inflated when its directory breaks a limit."""
    _check_directory_size(file, file_name, limits)
    try:
        archive = GuardedZip(file, file_name, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise UnreadableFileError(f"{file_name} is not a readable .xlsx workbook: its zip package is damaged "
                                  f"({exc})") from None
    try:
        check_parts(archive.infolist(), file_name, limits)
    except BaseException:
        archive.close()
        raise
    return archive


def _check_directory_size(file: IO[bytes], file_name: str, limits: Limits) -> None:
    """Refuse a zip announcing more parts than the limit before ``ZipFile`` builds an object for each."""
    try:
        end = zipfile._EndRecData(file)  # type: ignore[attr-defined]  # the stdlib's own directory probe
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        end = None
    finally:
        file.seek(0)
    if end is None:
        return  # ZipFile will say what is wrong with it
    parts = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    if parts > limits.max_parts:
        raise LimitError(f"{file_name} is a zip of {parts:,} parts; the limit is {limits.max_parts:,} "
                         "(a workbook has a few dozen)")


def check_parts(infos: list[zipfile.ZipInfo], file_name: str, limits: Limits) -> None:
    if len(infos) > limits.max_parts:
        raise LimitError(f"{file_name} is a zip of {len(infos):,} parts; the limit is {limits.max_parts:,}")
    total = 0
    for info in infos:
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise UnreadableFileError(f"{file_name} is password-protected (encrypted zip); "
                                      "save it again without a password")
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_from_bytes and ratio > limits.max_ratio:
            raise LimitError(
                f"{file_name}: part {info.filename} inflates from {info.compress_size:,} to "
                f"{info.file_size:,} bytes ({ratio:,.0f}:1); the limit is {limits.max_ratio}:1 for parts over "
                f"{mib(limits.ratio_from_bytes)} (real sheets compress about 10:1: this looks like a zip bomb)")
    if total > limits.max_unzipped_bytes:
        raise LimitError(f"{file_name} inflates to {mib(total)} when unzipped; the limit for a workbook's "
                         f"decompressed size is {mib(limits.max_unzipped_bytes)}")


def inflate_all(archive: GuardedZip) -> dict[str, SheetExtent]:
    """Read every part once, discarding it: through a ``GuardedZip`` this checks all the limits (and the
    CRCs) in constant memory, before a reader that loads whole parts (calamine) is let at the file. Returns
    each worksheet's extent, collected on the way (``LimitError`` when one is over ``max_sheet_cells``)."""
    extents: dict[str, SheetExtent] = {}
    ods = "mimetype" in archive.namelist()
    for info in archive.infolist():
        if ods and info.filename == "content.xml":
            extents[info.filename] = _ods_extent(archive, info)
            continue
        scan = ExtentScan(info.filename, archive.file_name, archive.limits) if _SHEET_PART.search(info.filename) \
            else None
        with archive.open(info) as part:
            while data := part.read(_READ_CHUNK):
                if scan:
                    scan.feed(data)
        if scan:
            extents[info.filename] = scan.finish()
    return extents


_ODS_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_ODS_VALUE_TYPE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}value-type"


def _ods_extent(archive: GuardedZip, info: zipfile.ZipInfo) -> SheetExtent:
    """The largest table of an OpenDocument spreadsheet, counting repeated rows and cells as calamine lays them
    out (``number-rows-repeated`` x ``number-columns-repeated`` of a non-empty cell is that many cells); empty
    repeats (LibreOffice pads every sheet with them) do not count. Streamed: each row is dropped once counted."""
    from xml.etree.ElementTree import iterparse

    extent = SheetExtent(info.filename, cuttable=False)
    row = row_repeat = col = 0
    rows = cols = 0
    with archive.open(info) as part:
        for event, el in iterparse(part, events=("start", "end")):
            tag = el.tag
            if event == "start":
                if tag == _ODS_TABLE + "table":
                    row, rows, cols = 0, 0, 0
                elif tag == _ODS_TABLE + "table-row":
                    row_repeat, col = int(el.get(_ODS_TABLE + "number-rows-repeated", "1")), 0
                continue
            if tag in (_ODS_TABLE + "table-cell", _ODS_TABLE + "covered-table-cell"):
                repeat = int(el.get(_ODS_TABLE + "number-columns-repeated", "1"))
                if el.get(_ODS_VALUE_TYPE) is not None or len(el):
                    rows, cols = max(rows, row + row_repeat), max(cols, col + repeat)
                col += repeat
                el.clear()
            elif tag == _ODS_TABLE + "table-row":
                row += row_repeat
                el.clear()
            elif tag == _ODS_TABLE + "table" and rows * cols > extent.cells:
                extent.rows, extent.cols = rows, cols
    scan = ExtentScan(info.filename, archive.file_name, archive.limits)
    scan.extent = extent
    scan.check(extent.rows, extent.cols, "its cells and repeats")
    return extent


# --- A sheet's cell extent, collected while its XML is inflated ---------------------------------------------
# calamine builds a sheet as a dense grid spanning its extreme cell references, so the extent must be known
# before it parses: from the <dimension ref> and from every r="…" of the cells. The scan works on blocks of
# whole rows; the blocks (offsets and extents) also let the reader hand calamine the sheet in chunks.

BLOCK_BYTES = 1 << 20  # rows are scanned (and later cut into chunks) in blocks of about this size
_MAX_EXCEL_ROWS, _MAX_EXCEL_COLS = 1_048_576, 16_384
_ANY_REF = re.compile(rb"""\sr\s*=\s*(?:"([^"]*)"|'([^']*)')""")  # any spelling XML allows
_REF_VALUE = re.compile(rb"([A-Za-z]*)\$?([0-9]*)")
_ROW_REF = re.compile(rb'<row r="([0-9]+)"')  # the spelling every writer uses; anything else: the slow path
_CELL_COL = re.compile(rb'<c r="([A-Z]*)')
_TAG = re.compile(rb"<(?:[\w.-]+:)?(row|c)[\s/>]")
_PREFIX = re.compile(rb"(?:[\w.-]+:)?")
_DATA_OPEN = re.compile(rb"<(?:[\w.-]+:)?sheetData\b[^>]*>")  # text cannot hold a '<': only the tag matches
_DATA_CLOSE = re.compile(rb"</(?:[\w.-]+:)?sheetData\s*>")
_DIMENSION = re.compile(rb"""<(?:[\w.-]+:)?dimension\s+ref\s*=\s*["']([^"']*)["']""")
_ODD_R = re.compile(rb"""r(?:\s+=|=(?!"))""")  # r spaced before '=', or quoted otherwise than "…"


@dataclass(frozen=True)
class SheetBlock:
    start: int  # offset of its first byte in the inflated part
    end: int  # offset after its last row's end tag
    first_row: int  # 1-based, 0 when the block holds no row
    last_row: int


@dataclass
class SheetExtent:
    part: str
    dimension: tuple[int, int] | None = None  # (rows, columns) the <dimension ref> declares
    rows: int = 0  # the furthest row and column any cell can land in (1-based)
    cols: int = 0
    cuttable: bool = True  # False: positions depend on earlier rows (no r=) or rows could not be told apart
    data_start: int = -1  # offsets of what is inside <sheetData> (-1: no sheetData)
    data_end: int = -1
    blocks: list[SheetBlock] = field(default_factory=list)

    @property
    def cells(self) -> int:
        return self.rows * self.cols


def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ch - 64
    return n


def _row_bound(lo: int, hi: int) -> tuple[int, int, bytes]:
    """Rows lo..hi widened to whole runs of 10**k sharing one of two consecutive prefixes, with a regex matching
    exactly those row numbers: two branches, so checking every cell against it stays cheap."""
    k = 0
    while hi // 10**k - lo // 10**k > 1:
        k += 1
    first, last = lo // 10**k, hi // 10**k
    low = max(first * 10**k, 1)
    tail = f"[0-9]{{{k}}}" if k else ""
    alts = [f"{p}{tail}" for p in dict.fromkeys((first, last)) if p]
    if not first:  # the run below 10**k: numbers of 1..k digits, no leading zero
        alts.append(f"[1-9][0-9]{{0,{k - 1}}}")
    return low, (last + 1) * 10**k - 1, "|".join(alts).encode()


def last_row_end(data: bytes, start: int = 0, end: int | None = None) -> int:
    """The offset just after the last row end tag (``</row>``, any prefix) in data[start:end], or -1."""
    i = len(data) if end is None else end
    while (i := data.rfind(b"row>", start, i)) >= 0:
        lt = data.rfind(b"</", max(start, i - 66), i)
        if lt >= 0 and _PREFIX.fullmatch(data, lt + 2, i):
            return i + 4
    return -1


class ExtentScan:
    """Fed a sheet part's inflated bytes in order; ``finish`` returns its ``SheetExtent``."""

    def __init__(self, part: str, file_name: str, limits: Limits) -> None:
        self.extent = SheetExtent(part)
        self._file_name = file_name
        self._limits = limits
        self._pieces: list[bytes] = []  # not yet scanned, joined once a block's worth is there
        self._pending = 0
        self._offset = 0  # offset of the first pending byte in the part
        self._cols_ok = self._cols_up_to(0)
        self._unnumbered_rows = 0

    def feed(self, data: bytes) -> None:
        self._pieces.append(data)
        self._pending += len(data)
        if self._pending < BLOCK_BYTES:
            return
        buf = b"".join(self._pieces)
        cut = last_row_end(buf)
        if cut < 0:
            if len(buf) < 16 * BLOCK_BYTES:
                self._pieces = [buf]
                return  # one long row: wait for its end
            self.extent.cuttable = False  # no row end in 16 MiB: scanned, but never cut here
            cut = len(buf)
        self._block(buf[:cut])
        self._offset += cut
        self._pieces, self._pending = ([buf[cut:]], len(buf) - cut) if cut < len(buf) else ([], 0)

    def finish(self) -> SheetExtent:
        buf = b"".join(self._pieces)
        self._block(buf, last=True)
        self._offset += len(buf)
        self._pieces, self._pending = [], 0
        ext = self.extent
        ext.rows += self._unnumbered_rows
        # Only the cells count: calamine lays out its grid from their references and ignores <dimension>
        # (a declared A1:XFD1048576 over two rows reads in 13 MiB; tests/loader/test_loader_extent.py).
        self.check(ext.rows, ext.cols, "its cell references")
        return ext

    def check(self, rows: int, cols: int, source: str) -> None:
        limit = self._limits.max_sheet_cells
        for n, limit_n, what in ((rows, _MAX_EXCEL_ROWS, "rows"), (cols, _MAX_EXCEL_COLS, "columns")):
            if n > limit_n:
                raise LimitError(f"{self._file_name}: sheet {self.extent.part} has more than {limit_n:,} {what} "
                                 f"({n:,} by {source}; the loader's limit, Excel's own)")
        if rows * cols > limit:
            raise LimitError(f"{self._file_name}: sheet {self.extent.part} spans {rows:,} rows x {cols:,} columns "
                             f"by {source} ({rows * cols:,} cells); the limit is {limit:,} cells (a reader lays "
                             "out that whole grid)")

    @staticmethod
    def _cols_up_to(cols: int) -> bytes:
        """A regex matching the column letters A..``cols`` (1-based), and nothing longer."""
        letters, n = "", max(cols, 1)
        while n:
            n, rem = divmod(n - 1, 26)
            letters = chr(65 + rem) + letters
        alts = [f"[A-Z]{{1,{len(letters) - 1}}}"] if len(letters) > 1 else []
        for i, ch in enumerate(letters):
            tail = f"[A-Z]{{{len(letters) - i - 1}}}"
            if ch != "A":
                alts.append(f"{letters[:i]}[A-{chr(ord(ch) - 1)}]{tail}")
        alts.append(letters)
        return "|".join(alts).encode()

    def _block(self, block: bytes, last: bool = False) -> None:
        """Scan what of the block is inside <sheetData> (calamine reads cells there only)."""
        ext = self.extent
        start = 0
        if ext.data_start < 0:
            m = _DATA_OPEN.search(block)
            if m is None:
                if ext.dimension is None:
                    self._dimension(block)
                ext.blocks.append(SheetBlock(self._offset, self._offset + len(block), 0, 0))
                return
            if ext.dimension is None:
                self._dimension(block[:m.start()])
            ext.data_start = self._offset + m.end()
            start = m.end()
            if m.group(0).endswith(b"/>"):  # <sheetData/>: no rows at all
                ext.data_end = ext.data_start
                ext.blocks.append(SheetBlock(self._offset, self._offset + len(block), 0, 0))
                return
        elif ext.data_end == ext.data_start:
            ext.blocks.append(SheetBlock(self._offset, self._offset + len(block), 0, 0))
            return
        end = len(block)
        if last:  # the last closing tag: one in a comment before it cannot hide cells
            closes = list(_DATA_CLOSE.finditer(block, start))
            if closes:
                end = closes[-1].start()
            ext.data_end = self._offset + end
        ext.blocks.append(SheetBlock(self._offset, self._offset + len(block), *self.span(block[start:end])))

    def span(self, rows: bytes) -> tuple[int, int]:
        """(first row, last row) bound of some whole rows of the sheet's data."""
        span = self._fast_span(rows)
        return span if span is not None else self._slow_span(rows)

    def _dimension(self, prologue: bytes) -> None:
        m = _DIMENSION.search(prologue)
        if m:
            last = m.group(1).rpartition(b":")[2]
            ref = _REF_VALUE.fullmatch(last)
            if ref and ref.group(1) and ref.group(2):
                self.extent.dimension = (int(ref.group(2)), _col_number(ref.group(1)))

    def _fast_span(self, region: bytes) -> tuple[int, int] | None:
        """A (first row, last row) bound when every cell is spelled ``<c r="A1"`` with no other r, as writers do;
        None: unsure (the slow path then reads every reference). Byte counts and one regex search: no match
        object per cell."""
        cells = region.count(b'<c r="')
        named = region.count(b' r="')
        if (region.count(b"<c") != cells or region.count(b"r=") != named or b":c" in region
                or _ODD_R.search(region)):
            return None  # a cell without r first, an r spelled otherwise, a prefixed tag
        rows = _ROW_REF.findall(region)
        if named != cells + len(rows):
            return None  # a second r on a cell (calamine takes the last), an r on another tag
        if not rows:
            return (0, 0) if not cells else None
        lo, hi = int(rows[0]), int(rows[-1])
        if not 1 <= lo <= hi:
            lo, hi = min(map(int, rows)), max(map(int, rows))
        if lo < 1:
            return None
        lo, hi, allowed_rows = _row_bound(lo, hi)
        if hi > _MAX_EXCEL_ROWS:
            return None  # near Excel's last row the widened bound is too loose: read every reference
        # One search finds any cell past the known columns or outside the rows (possessive: no backtracking).
        if re.search(b'<c r="(?!(?:' + self._cols_ok + b")(?:" + allowed_rows + b')")', region):
            cols = max(_col_number(c) for c in set(_CELL_COL.findall(region)))
            self._set_cols(cols)
            if re.search(b'<c r="[A-Z]*+(?!(?:' + allowed_rows + b')")', region):
                return None
        self.extent.rows = max(self.extent.rows, hi)
        return lo, hi

    def _slow_span(self, region: bytes) -> tuple[int, int]:
        """Every r="…" of the block, however spelled; rows or cells without one are bounded by counting."""
        lo = hi = cols = refs_rows = refs_cells = 0
        for m in _ANY_REF.finditer(region):
            value = m.group(1) if m.group(1) is not None else m.group(2)
            ref = _REF_VALUE.fullmatch(value.strip())
            if not ref or not ref.group(2) or len(ref.group(1)) > 3 or len(ref.group(2)) > 7 or not int(ref.group(2)):
                raise LimitError(f"{self._file_name}: sheet {self.extent.part} has a cell reference "
                                 f"r={value[:20].decode('latin-1')!r} outside Excel's grid")
            row = int(ref.group(2))
            lo, hi = (row, row) if not lo else (min(lo, row), max(hi, row))
            if ref.group(1):
                refs_cells += 1
                cols = max(cols, _col_number(ref.group(1)))
            else:
                refs_rows += 1
        tags = _TAG.findall(region)
        row_tags = tags.count(b"row")
        unnumbered_cells = len(tags) - row_tags - refs_cells
        if unnumbered_cells > 0:  # cells placed after the previous one, in a row placed after the previous one
            cols += unnumbered_cells
            self._unnumbered_rows += max(row_tags - refs_rows, 0)
            self.extent.cuttable = False
        self._set_cols(cols)
        self.extent.rows = max(self.extent.rows, hi)
        return lo, hi

    def _set_cols(self, cols: int) -> None:
        if cols > self.extent.cols:
            self.extent.cols = cols
            self._cols_ok = self._cols_up_to(cols)
