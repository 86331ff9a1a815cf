"""Size limits that keep a hostile or broken spreadsheet from exhausting memory or time.

An ``.xlsx`` is a zip: 0.3 MB can inflate to gigabytes. The zip's directory is checked before any part
is parsed (declared sizes, compression ratio, number of parts), and every part is then read through a
capped stream, because declared sizes can lie. Defaults are documented in docs/loader.md.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 2**20

MAX_UNZIPPED_BYTES = 256 * MiB  # all parts of a workbook, inflated (a 100,000-row, 45-column export: 145 MiB)
MAX_RATIO = 100  # inflated / compressed, for a part over RATIO_FROM_BYTES (real sheets: about 10:1)
RATIO_FROM_BYTES = 4 * MiB  # small parts of repeated markup compress better than 100:1 and are harmless
MAX_PARTS = 10_000  # zip members (a workbook has a dozen; each costs memory before anything is read)
MAX_XML_RUN_BYTES = 1 * MiB  # text between two tags; Excel's own limit is 32,767 characters per cell
MAX_TAGS_PER_ROW = 200_000  # tags in one sheet row (Excel: 16,384 columns, a few tags per cell)
MAX_ROWS = 1_048_576  # Excel's sheet limit, applied to CSV files too
# rows x columns a sheet spans (its <dimension> and its cell references): calamine lays out that whole grid.
# The 100,000-row, 45-column benchmark export spans 4.5 million; Excel allows 17 billion.
MAX_SHEET_CELLS = 10_000_000
MAX_CSV_BYTES = 256 * MiB
MAX_CSV_RECORD_CHARS = 4 * MiB  # one CSV record (a row, even across quoted line breaks)
MAX_FIELD_CHARS = 1_000  # a cell that becomes a job field or an agent variable
MAX_HEADER_CHARS = 200  # longer header text is cut in messages (no real header is that long)


@dataclass(frozen=True)
class Limits:
    max_unzipped_bytes: int = MAX_UNZIPPED_BYTES
    max_ratio: int = MAX_RATIO
    ratio_from_bytes: int = RATIO_FROM_BYTES
    max_parts: int = MAX_PARTS
    max_xml_run_bytes: int = MAX_XML_RUN_BYTES
    max_tags_per_row: int = MAX_TAGS_PER_ROW
    max_rows: int = MAX_ROWS
    max_sheet_cells: int = MAX_SHEET_CELLS
    max_csv_bytes: int = MAX_CSV_BYTES
    max_csv_record_chars: int = MAX_CSV_RECORD_CHARS
    max_field_chars: int = MAX_FIELD_CHARS


DEFAULT_LIMITS = Limits()


def mib(n: int) -> str:
    """A byte count for messages: '256 MiB', '0.3 MiB'."""
    value = n / MiB
    return f"{value:,.0f} MiB" if value >= 10 else f"{value:,.1f} MiB"
