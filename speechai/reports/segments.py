"""The report's "segments" section: per batch and segment, people, calls, contacts, successes and cost.

Fed job by job by the report's single pass (``reports.data``), with the same counting rules: a call is a
placed attempt in the date range, a contact one whose outcome is ``conversation``, cost the provider's
cents summed as decimals. A job loaded before its batch had segments shows under segment "".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from speechai.reports.values import cents

COLUMNS = [("batch", "text"), ("segment", "text"), ("people", "int"), ("calls", "int"), ("contacts", "int"),
           ("successes", "int"), ("people_with_success", "int"), ("cost_cents", "cents")]


@dataclass
class _Row:
    people: int = 0
    calls: int = 0
    contacts: int = 0
    successes: int = 0
    people_with_success: int = 0
    cost: Decimal = field(default_factory=Decimal)


@dataclass
class SegmentFigures:
    rows: dict[tuple[str, str], _Row] = field(default_factory=dict)

    def job(self, batch_id: str, raw: dict[str, Any], attempts: list[dict[str, Any]]) -> None:
        """One job and its attempts inside the report's date range."""
        row = self.rows.setdefault((batch_id, raw.get("segment") or ""), _Row())
        row.people += 1
        placed = [a for a in attempts if a.get("placed") is True]
        row.calls += len(placed)
        row.contacts += sum(a.get("outcome") == "conversation" for a in placed)
        row.successes += sum(a.get("success") is True for a in placed)
        row.people_with_success += any(a.get("success") is True for a in placed)
        row.cost += sum((cents(a.get("cost_cents")) for a in placed), Decimal(0))

    def table(self) -> list[list[Any]]:
        """Rows in ``COLUMNS`` order, by batch then segment; batches without segments left out."""
        with_segments = {b for (b, s) in self.rows if s}
        return [[b, s, r.people, r.calls, r.contacts, r.successes, r.people_with_success, r.cost]
                for (b, s), r in sorted(self.rows.items()) if b in with_segments]
