"""Report routes of the control endpoint (admin, and an account's operator and viewer keys for their own
account: another account's batch or account answers 404):

- ``GET /reports/summary?batch=&account=&from=&to=`` — the report as JSON;
- ``GET /reports/summary.xlsx?…`` — the same report as an Excel download.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Any

import anyio
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, create_model

from speechai.api.auth import ensure_account, principal, requires
from speechai.api.openapi import documented
from speechai.api.problems import ApiError
from speechai.api.routes import parse_query
from speechai.reports.data import ReportFilter, build_report, to_json
from speechai.reports.xlsx import xlsx_bytes
from speechai.store.api_models import Role
from speechai.store.models import Batch

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_ID_CHARS = 256


class _ReportQueryBase(BaseModel):
    """The report's filter; an account's key reports on its own account only."""

    model_config = ConfigDict(extra="forbid")

    batch: str | None = Field(None, max_length=MAX_ID_CHARS, description="only this batch")
    account: str | None = Field(None, max_length=MAX_ID_CHARS,
                                description="only this account (an account's key: its own, the default)")
    to: str | None = Field(None, max_length=40, description="last business day, YYYY-MM-DD")


# ``from`` is a Python keyword: the field is named as the query parameter through create_model
ReportQuery = create_model("ReportQuery", __base__=_ReportQueryBase,
                           **{"from": (str | None, Field(None, max_length=40,
                                                         description="first business day, YYYY-MM-DD"))})


class ReportColumn(BaseModel):
    name: str
    kind: str


class ReportSection(BaseModel):
    title: str
    columns: list[ReportColumn]
    rows: list[dict[str, Any]]


class ReportFilterOut(BaseModel):
    batch: str | None
    account: str | None
    from_: str | None = Field(alias="from")
    to: str | None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ReportOut(BaseModel):
    """The campaign report: named sections of rows (money in cents)."""

    generated_at: str
    filter: ReportFilterOut
    currency: str
    money_unit: str
    sections: dict[str, ReportSection]


def parse_day(name: str, text: str | None) -> date | None:
    """A ``YYYY-MM-DD`` business date; ValueError naming the field and the value."""
    if text is None or text == "":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} must be a date as YYYY-MM-DD, got {text[:40]!r}") from None


def report_filter(batch: str | None, account: str | None, date_from: str | None, date_to: str | None) -> ReportFilter:
    for name, value in (("batch", batch), ("account", account)):
        if value is not None and len(value) > MAX_ID_CHARS:
            raise ValueError(f"{name} is longer than {MAX_ID_CHARS} characters")
    return ReportFilter(batch=batch or None, account=account or None, date_from=parse_day("from", date_from),
                        date_to=parse_day("to", date_to))


async def _filter_of(request: web.Request) -> ReportFilter:
    """The query as a filter, scoped: an account's key gets its own account's report, and another
    account's batch or account answers 404 as one that does not exist."""
    q = parse_query(request, ReportQuery)
    try:
        flt = report_filter(q.batch, q.account, getattr(q, "from"), q.to)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    who = principal(request)
    if who.is_admin:
        return flt
    if flt.account is not None:
        ensure_account(request, flt.account, f"no account {flt.account!r}")
    if flt.batch is not None:
        batch = await Batch.get(flt.batch)
        ensure_account(request, batch.account_id if batch is not None else None, f"no batch {flt.batch!r}")
    return replace(flt, account=who.account_id)


def report_routes(*, clock: Any) -> list[web.RouteDef]:
    @documented(tag="reports", query=ReportQuery, ok=ReportOut, errors=(422,))
    @requires(Role.OPERATOR, Role.VIEWER, account_from="handler")
    async def summary(request: web.Request) -> web.StreamResponse:
        """Campaign report as JSON (query: batch, account, from, to as YYYY-MM-DD business dates)."""
        flt = await _filter_of(request)
        report = await build_report(flt, clock.now())
        body = ReportOut.model_validate(to_json(report)).model_dump(mode="json")
        return web.json_response(body, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    @documented(tag="reports", query=ReportQuery, ok_content=XLSX_TYPE, errors=(422,),
                ok_schema={"type": "string", "contentMediaType": XLSX_TYPE,
                           "description": "an Excel workbook, sent as an attachment"})
    @requires(Role.OPERATOR, Role.VIEWER, account_from="handler")
    async def summary_xlsx(request: web.Request) -> web.StreamResponse:
        """Campaign report as an Excel workbook (same query as /reports/summary)."""
        flt = await _filter_of(request)
        report = await build_report(flt, clock.now())
        body = await anyio.to_thread.run_sync(xlsx_bytes, report)  # CPU work off the event loop
        name = f"speechai-report-{flt.batch or flt.account or 'all'}-{report.generated_at:%Y%m%d-%H%M}.xlsx"
        return web.Response(body=body, content_type=XLSX_TYPE,
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return [web.get("/reports/summary", summary), web.get("/reports/summary.xlsx", summary_xlsx)]
