"""Report routes of the control endpoint (behind its bearer token, like every other route):

- ``GET /reports/summary?batch=&account=&from=&to=`` — the report as JSON;
- ``GET /reports/summary.xlsx?…`` — the same report as an Excel download.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import anyio
from aiohttp import web

from speechai.reports.data import ReportFilter, build_report, to_json
from speechai.reports.xlsx import xlsx_bytes

QUERY_KEYS = ("batch", "account", "from", "to")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_ID_CHARS = 256


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


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _filter_of(request: web.Request) -> ReportFilter | web.Response:
    unknown = sorted(set(request.query) - set(QUERY_KEYS))
    if unknown:
        return _error(422, f"unknown query parameter(s) {', '.join(repr(k[:40]) for k in unknown)}; "
                           f"allowed: {', '.join(QUERY_KEYS)}")
    for key in QUERY_KEYS:
        if len(request.query.getall(key, [])) > 1:
            return _error(422, f"{key} given more than once")
    q = request.query
    try:
        return report_filter(q.get("batch"), q.get("account"), q.get("from"), q.get("to"))
    except ValueError as exc:
        return _error(422, str(exc))


def report_routes(*, clock: Any) -> list[web.RouteDef]:
    async def summary(request: web.Request) -> web.StreamResponse:
        """Campaign report as JSON (query: batch, account, from, to as YYYY-MM-DD business dates)."""
        flt = _filter_of(request)
        if isinstance(flt, web.Response):
            return flt
        report = await build_report(flt, clock.now())
        return web.json_response(to_json(report), dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def summary_xlsx(request: web.Request) -> web.StreamResponse:
        """Campaign report as an Excel workbook (same query as /reports/summary)."""
        flt = _filter_of(request)
        if isinstance(flt, web.Response):
            return flt
        report = await build_report(flt, clock.now())
        body = await anyio.to_thread.run_sync(xlsx_bytes, report)  # CPU work off the event loop
        name = f"speechai-report-{flt.batch or flt.account or 'all'}-{report.generated_at:%Y%m%d-%H%M}.xlsx"
        return web.Response(body=body, content_type=XLSX_TYPE,
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return [web.get("/reports/summary", summary), web.get("/reports/summary.xlsx", summary_xlsx)]
