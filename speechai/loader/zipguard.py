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


class GuardedZip(zipfile.ZipFile):
    """A read-only ``ZipFile`` whose ``open`` (and so ``read``) returns guarded streams."""

    def __init__(self, file: IO[bytes], file_name: str, limits: Limits) -> None:
        super().__init__(file, "r")
        self._budget = _Budget(file_name, limits)

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


def inflate_all(archive: zipfile.ZipFile) -> None:
    """Read every part once, discarding it: through a ``GuardedZip`` this checks all the limits (and the
    CRCs) in constant memory, before a reader that loads whole parts (calamine) is let at the file."""
    for info in archive.infolist():
        with archive.open(info) as part:
            while part.read(_READ_CHUNK):
                pass
