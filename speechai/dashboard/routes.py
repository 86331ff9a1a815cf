"""The live dashboard of the control endpoint.

- ``GET /`` — the page (static HTML with inline CSS and vanilla JS, no build step, no CDN); it needs no
  key to load and asks for one, kept in the browser's session storage;
- ``GET /dashboard/summary`` — what the page shows, as JSON (behind the key like every data route);
- ``GET /events`` — Server-Sent Events: a ``summary`` event every ``SUMMARY_EVERY_S`` and a ``log``
  event for each event the runtime logs (from the structlog tap, personal data masked). The page reads
  it with ``fetch`` so the key travels in the ``Authorization`` header, never in a URL. A stream ends
  after ``STREAM_S`` (inside the endpoint's request time limit) and the page reconnects at once.

Job counts per state and calls in flight are read fresh for every summary (one indexed aggregate per
batch, and memory), and so are the headline figures: calls placed and finished, outcomes, contacts,
successes, cost so far and calls per local hour are running sums kept by ``dashboard.live`` from the jobs
written since the previous summary (the ``sync_ms`` index), at most ``LIVE_MIN_S`` apart. Only what
needs the full report (promises to pay and their amounts) comes from the report builder, recomputed at
most every ``max(REPORT_MIN_S, REPORT_FACTOR × its last duration)``, so a large campaign costs the
database a bounded share of its time; ``report_at`` says how old those are.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from speechai.api.openapi import documented
from speechai.dashboard.live import LiveFigures, batch_docs
from speechai.dashboard.page import PAGE
from speechai.observability import events
from speechai.reports.data import ReportFilter, build_report, plain
from speechai.store.models import BatchStatus, Job, JobState

SUMMARY_EVERY_S = 2.0
STREAM_S = 25.0  # below the control endpoint's 30 s request limit
REPORT_MIN_S, REPORT_FACTOR = 5.0, 10.0
LIVE_MIN_S = 1.0  # several open pages share one refresh of the live figures
QUEUE_MAX = 500  # events waiting for one slow client; older ones are dropped (and counted)
FEED_KEYS = ("timestamp", "level", "event", "batch_id", "job_id", "call_id", "outcome", "success", "state", "reason",
             "action", "webhook_event", "account_id", "error", "count",
             "agent_call_id", "user_id", "status", "duration_ms")  # human agents' calls (speechai.agents)


class _ReportCache:
    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.data: dict[str, Any] | None = None
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self.data is None or time.monotonic() >= self._next:
                started = time.monotonic()
                report = await build_report(ReportFilter(), self.clock.now())
                took = time.monotonic() - started
                self._next = time.monotonic() + max(REPORT_MIN_S, REPORT_FACTOR * took)
                self.data = _figures(report)
            return self.data


def _figures(report: Any) -> dict[str, Any]:
    """What the page takes from the full report: promises to pay, and the money's currency."""
    [t] = report.section("totals").records()
    return {"report_at": report.generated_at.isoformat(), "currency": report.currency,
            "promises": plain(t["promises"]), "promised_amount": plain(t["promised_amount"]),
            "promised_currency": t["promised_currency"]}


class _Live:
    """The live figures, refreshed at most every ``LIVE_MIN_S`` whoever asks."""

    def __init__(self) -> None:
        self.figures = LiveFigures()
        self.data: dict[str, Any] | None = None
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def get(self, docs: list[dict[str, Any]], jobs_now: int) -> dict[str, Any]:
        async with self._lock:
            if self.data is None or time.monotonic() >= self._next:
                self.data = await self.figures.refresh(docs, jobs_now)
                self._next = time.monotonic() + LIVE_MIN_S
            return self.data


async def _batches(docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    docs = docs if docs is not None else await batch_docs()
    states = [s.value for s in JobState]
    out = []
    for d in docs:
        rows = await Job.get_pymongo_collection().aggregate([
            {"$match": {"batch_id": d["_id"]}}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}])
        got = {r["_id"]: int(r["n"]) async for r in rows}
        jobs = {s: got.get(s, 0) for s in states}
        finished = sum(jobs[s] for s in ("done", "failed", "excluded", "cancelled"))
        out.append({"id": d["_id"], "name": d.get("name") or "", "account": d.get("account_id"),
                    "status": d.get("status"), "why": d.get("waiting_reason") or (
                        d.get("status_reason") if d.get("status") != BatchStatus.ACTIVE.value else "") or "",
                    "jobs": jobs, "total": sum(jobs.values()), "finished": finished})
    return out


class _Feed:
    """One SSE client's queue of log events (bounded: a slow reader loses the oldest, never the runtime)."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self.dropped = 0

    def on_event(self, event: dict[str, Any]) -> None:
        owner = event.get("instance")
        if owner is not None and owner != self.instance_id:
            return
        item = {k: event[k] for k in FEED_KEYS if k in event}
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._put(item)
        else:  # logged from a worker thread
            self.loop.call_soon_threadsafe(self._put, item)

    def _put(self, item: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


def _frame(kind: str, data: Any) -> bytes:
    body = json.dumps(data, default=str, ensure_ascii=False)
    return f"event: {kind}\ndata: {body}\n\n".encode()


# The summary's shape, as far as a client relies on it; its figures carry more fields.
SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["time", "instance", "batches", "totals"],
    "properties": {"time": {"type": "string", "format": "date-time"}, "instance": {"type": "string"},
                   "in_flight": {"type": ["integer", "null"]},
                   "batches": {"type": "array", "items": {"type": "object"}},
                   "totals": {"type": "object"}, "currency": {"type": "string"}},
}


def dashboard_routes(*, instance_id: str, clock: Any, scheduler: Any = None) -> list[web.RouteDef]:
    cache = _ReportCache(clock)
    live = _Live()

    async def summary_data() -> dict[str, Any]:
        docs = await batch_docs()
        batches = await _batches(docs)
        figures = await live.get(docs, sum(b["total"] for b in batches))
        report = await cache.get()
        totals = {**figures["totals"], "promises": report["promises"], "promised_amount": report["promised_amount"],
                  "promised_currency": report["promised_currency"]}
        return {"time": clock.now().isoformat(), "instance": instance_id,
                "in_flight": len(scheduler.in_flight) if scheduler is not None else None,
                "batches": batches, **figures, "totals": totals, "currency": report["currency"],
                "report_at": report["report_at"]}

    @documented(tag="dashboard", ok_content="text/html", ok_schema={"type": "string"})
    async def page(request: web.Request) -> web.Response:
        """The live dashboard page (asks for an API key)."""
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                                                "style-src 'unsafe-inline'; img-src 'self' data:"})

    @documented(tag="dashboard", ok_schema=SUMMARY_SCHEMA)
    async def summary(request: web.Request) -> web.Response:
        """Dashboard figures: batches with job counts, calls in flight, outcomes, cost, calls per hour."""
        return web.json_response(await summary_data())

    @documented(tag="dashboard", ok_content="text/event-stream",
                ok_schema={"type": "string", "description": "events `summary` (the summary's JSON), `log`, `bye`"})
    async def stream(request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: ``summary`` every 2 s and a ``log`` event per runtime event."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        feed = _Feed(instance_id)
        events.subscribe(feed)
        try:
            await resp.write(b"retry: 1000\n\n")
            ends = time.monotonic() + STREAM_S
            next_summary = 0.0
            while (now := time.monotonic()) < ends:
                if now >= next_summary:
                    await resp.write(_frame("summary", await summary_data()))
                    next_summary = now + SUMMARY_EVERY_S
                try:
                    item = await asyncio.wait_for(feed.queue.get(), timeout=max(0.0, next_summary - now))
                except TimeoutError:
                    continue
                await resp.write(_frame("log", item))
            await resp.write(_frame("bye", {"dropped": feed.dropped}))
        finally:
            events.unsubscribe(feed)
        return resp

    return [web.get("/", page), web.get("/dashboard/summary", summary), web.get("/events", stream)]
