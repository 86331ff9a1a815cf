"""Report figures of a scripted campaign, checked exactly (counts and cents), and its Excel workbook
reopened with openpyxl and checked cell by cell."""

from __future__ import annotations

import zipfile
from collections import Counter
from datetime import date, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from speechai.reports.data import ReportFilter, build_report, to_json
from speechai.reports.render import render_markdown, render_terminal
from speechai.reports.xlsx import sheet_name, write_xlsx
from speechai.store.models import CallRecord, Job
from tests.reports.campaign import EXPECTED_COST, SCL

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=SCL)


async def stored_calls() -> list[tuple[Job, dict]]:
    """Every placed attempt with its job, read back through Beanie (the report reads raw cursors)."""
    out = []
    async for job in Job.find({}):
        out += [(job, a.model_dump()) for a in job.attempts if a.placed]
    return out


async def test_totals_and_batch_figures_are_exact(report_db) -> None:
    report = await build_report(ReportFilter(), NOW)
    [t] = report.section("totals").records()
    assert EXPECTED_COST == Decimal("81.918")
    assert (t["batches"], t["jobs"], t["calls"], t["not_placed"], t["contacts"], t["successes"]) == (1, 6, 12, 0, 7, 3)
    assert (t["contact_rate"], t["success_rate"]) == (Decimal("0.5833"), Decimal("0.2500"))
    assert t["cost_cents"] == EXPECTED_COST
    assert t["cost_per_call_cents"] == Decimal("6.8265") and t["cost_per_success_cents"] == Decimal("27.3060")
    # talk time is the provider's duration_ms, summed from the stored payloads independently
    payload_ms = sum([rec.payload.get("duration_ms", 0) async for rec in CallRecord.find({})])
    assert t["talk_ms"] == payload_ms and abs(payload_ms - 540_000) <= 12  # 3x100 + 3x50 + 3x20 + 30 s
    assert (t["promises"], t["promised_amount"], t["do_not_call_added"]) == (3, Decimal(450_000), 1)

    [b] = report.section("batches").records()
    assert (b["batch"], b["account"], b["timezone"], b["jobs"]) == ("b1", "acme", "America/Santiago", 6)
    assert (b["done"], b["failed"], b["excluded"], b["pending"], b["retry_scheduled"]) == (3, 2, 1, 0, 0)
    assert (b["calls"], b["contacts"], b["successes"], b["cost_cents"]) == (12, 7, 3, EXPECTED_COST)
    assert [(r["state"], r["jobs"]) for r in report.section("states").records()] == [
        ("done", 3), ("failed", 2), ("excluded", 1)]


async def test_breakdowns_by_outcome_phone_and_attempts(report_db) -> None:
    report = await build_report(ReportFilter(), NOW)
    outcomes = {(r["outcome"], r["disconnection_reason"]): (r["calls"], r["successes"], r["cost_cents"])
                for r in report.section("outcomes").records()}
    assert outcomes == {
        ("conversation", "agent_hangup"): (3, 3, Decimal("45.51")),
        ("conversation", "user_hangup"): (3, 0, Decimal("22.755")),
        ("conversation", "user_requested_dnc"): (1, 0, Decimal("4.551")),
        ("voicemail", "voicemail_reached"): (3, 0, Decimal("9.102")),
        ("no_answer", "dial_no_answer"): (1, 0, Decimal(0)),
        ("bad_number", "invalid_destination"): (1, 0, Decimal(0)),
    }
    phones = [(r["position"], r["phone"], r["calls"], r["contacts"], r["successes"])
              for r in report.section("phones").records()]
    assert phones == [(1, "primary", 11, 6, 2), (2, "alternative 1", 1, 1, 1)]
    assert [(r["calls"], r["jobs"]) for r in report.section("attempts_per_job").records()] == [(1, 2), (2, 2), (3, 2)]
    stopped = {(r["state"], r["reason"]): r["jobs"] for r in report.section("stopped").records()}
    assert stopped == {("excluded", "person asked not to be called (user_requested_dnc)"): 1,
                       ("failed", "conversation not successful (user_hangup); 3 of 3 attempts used"): 1,
                       ("failed", "voicemail (voicemail_reached); 3 of 3 attempts used"): 1}
    [dnc] = report.section("do_not_call").records()
    assert (dnc["account"], dnc["key"]) == ("acme", "+56966666666") and dnc["reason"].startswith("asked on call")


async def test_days_hours_and_promises_match_the_stored_attempts(report_db) -> None:
    report = await build_report(ReportFilter(), NOW)
    calls = await stored_calls()
    local = [a["created_at"].astimezone(SCL) for _, a in calls]
    assert {r["date"]: r["calls"] for r in report.section("days").records()} == Counter(t.date() for t in local)
    assert {r["hour"]: r["calls"] for r in report.section("hours").records()} == Counter(t.hour for t in local)
    days = report.section("days").records()
    assert sum(r["cost_cents"] for r in days) == EXPECTED_COST
    assert sum(r["conversation"] + r["voicemail"] + r["no_answer"] + r["bad_number"] for r in days) == 12

    promised = {a["call_id"]: (job.name, a["collected"]["promised_payment_date"]) for job, a in calls
                if "promised_payment_date" in a["collected"]}
    rows = report.section("promises").records()
    assert {r["call_id"]: (r["name"], r["promised_date"].isoformat()) for r in rows} == promised
    assert sorted(r["name"] for r in rows) == ["Ana", "Beto", "Carla"]
    assert all(r["promised_amount"] == Decimal(150_000) and r["success"] == "yes" for r in rows)
    collected = {r["variable"]: (r["calls"], r["numeric_total"]) for r in report.section("collected").records()}
    assert collected == {"promised_amount": (3, Decimal(150_000 * 3)), "promised_payment_date": (3, None)}


async def test_date_and_batch_filters(report_db) -> None:
    days = (await build_report(ReportFilter(), NOW)).section("days").records()
    last = days[-1]["date"]
    only = await build_report(ReportFilter(date_from=last, date_to=last), NOW)
    [t] = only.section("totals").records()
    assert (t["calls"], t["cost_cents"]) == (days[-1]["calls"], days[-1]["cost_cents"])
    assert t["jobs"] == 6  # states are today's, whatever the dates
    before = await build_report(ReportFilter(date_to=date(2026, 3, 1)), NOW)
    assert before.section("totals").records()[0]["calls"] == 0
    none = await build_report(ReportFilter(batch="no-such-batch"), NOW)
    assert none.section("totals").records()[0]["jobs"] == 0 and none.section("batches").rows == []
    assert (await build_report(ReportFilter(account="acme"), NOW)).section("totals").records()[0]["calls"] == 12
    with pytest.raises(ValueError, match="from"):
        ReportFilter(date_from=date(2026, 3, 5), date_to=date(2026, 3, 4))


async def test_text_and_json_renderings(report_db) -> None:
    report = await build_report(ReportFilter(), NOW)
    text = render_terminal(report)
    assert "12 calls (0 not placed)" in text and "cost 0.82 USD" in text and "== Promises to pay ==" in text
    md = render_markdown(report)
    assert "## Calls per local day" in md and "| conversation | agent_hangup | 3 | 3 |" in md
    first_day = render_markdown(await build_report(ReportFilter(date_from=date(2026, 3, 2), date_to=date(2026, 3, 2)),
                                                    NOW))
    assert first_day.startswith("# SpeechAI campaign report — from 2026-03-02, to 2026-03-02")
    per_day = first_day.split("## Calls per local day", 1)[1].split("\n## ", 1)[0]
    # only the day's own rows: a promise's payment date elsewhere in the report may be any later day
    assert "| 2026-03-02 |" in per_day and "| 2026-03-03 |" not in per_day
    data = to_json(report)
    [t] = data["sections"]["totals"]["rows"]
    assert t["cost_cents"] == 81.918 and t["calls"] == 12 and t["promised_amount"] == 450000
    assert data["sections"]["promises"]["rows"][0]["called_at"].startswith("2026-03-02T")


def expected_cell(value, kind):
    if value == "":
        return None
    if isinstance(value, Decimal):
        return int(value) if kind == "int" else float(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)  # Excel has no date-only type
    return value


async def test_xlsx_cell_by_cell(report_db, tmp_path) -> None:
    report = await build_report(ReportFilter(), NOW)
    path = tmp_path / "report.xlsx"
    write_xlsx(report, path)
    wb = load_workbook(path)
    assert wb.sheetnames == ["About", *(sheet_name(s) for s in report.sections.values())]
    for section in report.sections.values():
        ws = wb[sheet_name(section)]
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:{get_column_letter(len(section.columns))}{len(section.rows) + 1}"
        assert [c.value for c in ws[1]] == [c.name for c in section.columns]
        assert all(c.font.bold for c in ws[1])
        assert ws.max_row == len(section.rows) + 1
        for r, row in enumerate(section.rows, start=2):
            for c, (column, value) in enumerate(zip(section.columns, row, strict=True), start=1):
                cell = ws.cell(row=r, column=c)
                assert cell.value == expected_cell(value, column.kind), (section.key, r, column.name)
                if column.kind == "cents" and value is not None:
                    assert cell.number_format == "#,##0.0000"
                if column.kind == "rate" and value is not None:
                    assert cell.number_format == "0.0%"
                if column.kind == "date" and value is not None:
                    assert cell.is_date and cell.number_format == "yyyy-mm-dd"
    totals = wb[sheet_name(report.section("totals"))]
    header = [c.value for c in totals[1]]
    assert totals.cell(row=2, column=header.index("cost_cents") + 1).value == 81.918
    assert totals.cell(row=2, column=header.index("calls") + 1).value == 12
    # the chart of outcomes per day sits on the Days sheet and plots its outcome columns
    with zipfile.ZipFile(path) as z:
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) == 1
        xml = z.read(charts[0]).decode()
    assert "'Days'!$A$2:$A$" in xml and "Calls per day by outcome" in xml and 'val="stacked"' in xml
