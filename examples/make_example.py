"""Write ``examples/debtors.xlsx``: 30 fictitious debtors, ~60 instalment rows, wide collection format.

    /tmp/venv/bin/python examples/make_example.py
"""

from __future__ import annotations

from pathlib import Path

from speechai.loader.synthetic import WIDE_HEADERS, wide_collection_rows, write_xlsx


def main() -> None:
    path = Path(__file__).resolve().parent / "debtors.xlsx"
    rows = list(wide_collection_rows(30, seed=2026, first_rut=11_000_000, instalments=(1, 3)))
    write_xlsx(path, WIDE_HEADERS, rows)
    print(f"wrote {path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
