"""The report's "segments" section, from jobs loaded with rules and attempts written to the embedded
server: people, calls, contacts, successes and cost per batch and segment."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from speechai.loader.service import load_batch
from speechai.loader.spec import BatchSource
from speechai.reports.data import ReportFilter, build_report, to_json
from speechai.store.models import Attempt, Job
from tests.segments.data import AGENT_VARIABLES, NOW, RULES, collection_file


def _attempt(n: int, *, placed: bool = True, outcome: str | None = "no_answer", success: bool = False,
             cost: float | None = None) -> Attempt:
    return Attempt(attempt_id=f"a{n}", phone="+56975000001", created_at=NOW, placed=placed, outcome=outcome,
                   success=success, cost_cents=cost)


async def test_segment_figures(db, tmp_path: Path) -> None:
    source = BatchSource(file=collection_file(tmp_path), account="acme", batch_id="b1", segments=RULES,
                         agent_variables=AGENT_VARIABLES)
    assert (await load_batch(source, now=NOW, report_dir=tmp_path / "r")).ok
    jobs = {j.phones[0].number: j for j in await Job.find({"batch_id": "b1"}).to_list()}
    # early: +…01 two calls (a no-answer, then a successful conversation), +…05 one not placed
    jobs["+56975000001"].attempts = [_attempt(1, cost=1.5), _attempt(2, outcome="conversation", success=True,
                                                                     cost=12.25)]
    jobs["+56975000005"].attempts = [_attempt(3, placed=False, outcome="not_placed")]
    # big-late: one conversation without success
    jobs["+56975000002"].attempts = [_attempt(4, outcome="conversation", cost=7.1)]
    for job in jobs.values():
        await job.replace()
    report = await build_report(ReportFilter(batch="b1"), NOW)
    rows = {r["segment"]: r for r in report.section("segments").records()}
    assert set(rows) == {"early", "big-late", "talca", "default"}
    assert {k: rows["early"][k] for k in ("people", "calls", "contacts", "successes", "people_with_success")} == \
        {"people": 2, "calls": 2, "contacts": 1, "successes": 1, "people_with_success": 1}
    assert rows["early"]["cost_cents"] == Decimal("13.75")
    assert (rows["big-late"]["people"], rows["big-late"]["calls"], rows["big-late"]["contacts"],
            rows["big-late"]["successes"], rows["big-late"]["cost_cents"]) == (1, 1, 1, 0, Decimal("7.1"))
    assert (rows["talca"]["people"], rows["talca"]["calls"], rows["default"]["people"]) == (1, 0, 1)
    assert to_json(report)["sections"]["segments"]["rows"][0]["batch"] == "b1"


async def test_a_batch_without_segments_has_no_rows(db, tmp_path: Path) -> None:
    source = BatchSource(file=collection_file(tmp_path), account="acme", batch_id="b2")
    assert (await load_batch(source, now=NOW, report_dir=tmp_path / "r")).ok
    report = await build_report(ReportFilter(batch="b2"), NOW)
    assert report.section("segments").rows == []
