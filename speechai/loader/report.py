"""The load report: every rejected row, skipped duplicate and dropped phone, as a CSV the operator opens."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from speechai.loader.errors import RowError

HEADER = ("kind", "row", "column", "value", "reason", "detail")


def write_report(report_dir: Path, batch_id: str, now: datetime, rejected: Iterable[RowError],
                 duplicates: Iterable[tuple[str, str]], warnings: Iterable[RowError]) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{batch_id}-{now:%Y%m%dT%H%M%SZ}-load-report.csv"
    tmp = path.with_suffix(".tmp")
    # utf-8-sig so Excel shows accents; written aside then renamed so a report is never half there.
    with tmp.open("w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for e in rejected:
            w.writerow(("rejected", e.row, e.column, e.value, str(e.reason), e.detail))
        for person_key, other_batch in duplicates:
            w.writerow(("duplicate", "", "", person_key, "active_in_other_batch",
                        f"already pending in batch {other_batch}"))
        for e in warnings:
            w.writerow(("warning", e.row, e.column, e.value, str(e.reason), e.detail))
    tmp.replace(path)
    return path
