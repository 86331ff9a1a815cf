"""A Retell-compatible server for tests, the embedded default and benchmarks.

Same endpoints, payloads, errors, webhooks and signatures as Retell's API, over real HTTP. Call state
is computed lazily from timestamps of the injected clock on every read. Built to stay cheap at
thousands of live calls: calls are indexed by id, idempotency key and metadata value; a heap of
scheduled transitions (answer, end) keeps the set of live calls, so a create and the concurrency
check are O(log n), and one timeline task posts the webhooks as the clock reaches each transition.
Outcomes are scripted per number or drawn from seeded rates.

Besides Retell's API it serves, without authentication: ``GET /_sim/dials`` (every placed dial),
``GET /_sim/calls`` (each call's timeline in epoch ms) and ``GET /_sim/stats`` (request counters).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import heapq
import json
import os
import random
import re
import secrets
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import anyio
import structlog
from aiohttp import web

from actors.clock import Clock, RealClock, SimClock
from speechai.retell.signature import SIGNATURE_HEADER, sign
from speechai.retell.sim_outcomes import (
    CALLER_ID_OUTCOMES,
    DEFAULT_MAX_DURATION_S,
    DEFAULT_RING_TIMEOUT_S,
    CallPlan,
    OutcomeRates,
    call_cost,
    check_outcome,
    parse_talk_seconds,
    plan_call,
)

log = structlog.get_logger("speechai.retell.simulator")

IDEMPOTENCY_WINDOW = timedelta(hours=1)
DEFAULT_AGENT_ID = "agent_sim_default"
ENDPOINTS = ("create-phone-call", "get-call", "stop-call", "list-calls", "get-concurrency")
HANG = 0  # fail_next status: never answer (the client times out)
MALFORMED = -1  # fail_next status: 200 with a body that is not JSON
WEBHOOK_ATTEMPTS = 4  # first try + 3 retries, as Retell does
_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class DialRecord:
    """One call actually placed (a repeated idempotency key does not make one)."""

    call_id: str
    to_number: str
    from_number: str
    idempotency_key: str | None
    metadata: dict[str, Any]
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "to_number": self.to_number,
            "from_number": self.from_number,
            "idempotency_key": self.idempotency_key,
            "metadata": self.metadata,
            "at": self.at.isoformat(),
        }


@dataclass(eq=False)
class _SimCall:
    seq: int  # creation order: list-calls order and pagination
    call_id: str
    created_at: datetime
    plan: CallPlan
    from_number: str
    to_number: str
    agent_id: str
    agent_version: int
    metadata: dict[str, Any]
    dynamic_variables: dict[str, str]
    idempotency_key: str | None
    stopped_at: datetime | None = None
    started_posted: bool = False  # the answer transition has been processed
    finished: bool = False  # the end transition has been processed: no longer live
    delivery: asyncio.Task[None] | None = None  # the latest webhook delivery (keeps per-call order)

    @property
    def connected(self) -> bool:
        # A stop while still ringing means the call never connected.
        return self.plan.connected and not (self.stopped_at is not None and self.stopped_at < self.answer_at)

    @property
    def answer_at(self) -> datetime:
        """End of ringing: answer for connected plans, give-up time for the others."""
        return self.created_at + timedelta(seconds=self.plan.ring_s)

    @property
    def natural_end(self) -> datetime:
        return self.answer_at + timedelta(seconds=self.plan.talk_s)

    @property
    def end_at(self) -> datetime:
        if self.stopped_at is not None and self.stopped_at < self.natural_end:
            return self.stopped_at
        return self.natural_end

    @property
    def disconnection_reason(self) -> str:
        if self.stopped_at is not None and self.stopped_at < self.natural_end:
            return "manual_stopped"
        return self.plan.disconnection_reason

    def status(self, at: datetime) -> str:
        if at >= self.end_at:
            return "ended" if self.connected else "not_connected"
        if self.connected and at >= self.answer_at:
            return "ongoing"
        return "registered"

    def stop(self, at: datetime) -> bool:
        """End the call at ``at`` if it is still live; False when it had already finished."""
        if self.status(at) in ("ended", "not_connected"):
            return False
        self.stopped_at = at
        return True

    def timeline(self, at: datetime) -> dict[str, Any]:
        """Business-time milestones in epoch ms (for benchmarks: slot use, refill gaps)."""
        return {
            "call_id": self.call_id,
            "outcome": self.plan.outcome,
            "status": self.status(at),
            "created_ms": _ms(self.created_at),
            "answer_ms": _ms(self.answer_at) if self.connected else None,
            "end_ms": _ms(self.end_at),
            "metadata": self.metadata,
        }


def render_call(call: _SimCall, at: datetime, base_url: str, *, with_analysis: bool = True) -> dict[str, Any]:
    """The Retell call object as seen at business time ``at``."""
    status = call.status(at)
    obj: dict[str, Any] = {
        "call_id": call.call_id,
        "call_type": "phone_call",
        "direction": "outbound",
        "agent_id": call.agent_id,
        "agent_version": call.agent_version,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "call_status": status,
        "metadata": call.metadata,
        "retell_llm_dynamic_variables": call.dynamic_variables,
    }
    if status == "registered":
        return obj
    if status == "ongoing":
        obj["start_timestamp"] = _ms(call.answer_at)
        return obj
    plan, end = call.plan, call.end_at
    if status == "ended":
        duration_s = (end - call.answer_at).total_seconds()
        obj |= {
            "start_timestamp": _ms(call.answer_at),
            "end_timestamp": _ms(end),
            "duration_ms": _ms(end) - _ms(call.answer_at),
            "transcript": plan.transcript,
            "recording_url": f"{base_url}/_sim/recordings/{call.call_id}.wav",
            "public_log_url": f"{base_url}/_sim/logs/{call.call_id}.txt",
            "call_cost": call_cost(duration_s),
            "collected_dynamic_variables": {**call.dynamic_variables, **plan.collected},
        }
        analysis = {
            "call_summary": plan.summary,
            "user_sentiment": plan.user_sentiment,
            "call_successful": plan.call_successful,
            "in_voicemail": plan.in_voicemail,
            "custom_analysis_data": dict(plan.collected),
        }
    else:
        # Never connected: the dial attempt has a start and an end but no talk time and no charge.
        obj |= {
            "start_timestamp": _ms(call.created_at),
            "end_timestamp": _ms(end),
            "duration_ms": 0,
            "transcript": "",
            "call_cost": call_cost(0.0),
            "collected_dynamic_variables": dict(call.dynamic_variables),
        }
        analysis = {
            "call_summary": "The call did not connect.",
            "user_sentiment": "Unknown",
            "call_successful": False,
            "in_voicemail": False,
            "custom_analysis_data": {},
        }
    obj["disconnection_reason"] = call.disconnection_reason
    if with_analysis:
        obj["call_analysis"] = analysis
    return obj


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"status": "error", "message": message}, status=status, headers=headers)


def _override_ms(agent_override: Mapping[str, Any], key: str) -> float | None:
    """``agent_override.agent.<key>`` as Retell nests it (a flat key is accepted too)."""
    agent = agent_override.get("agent")
    value = agent.get(key) if isinstance(agent, Mapping) else None
    if value is None:
        value = agent_override.get(key)
    return float(value) / 1000 if isinstance(value, int | float) and value > 0 else None


@dataclass
class _Fault:
    status: int
    after_create: bool


# Heap entry of a scheduled transition: (business time, tie-break counter, kind, call).
_Transition = tuple[datetime, int, str, _SimCall]


class RetellSimulator:
    def __init__(
        self,
        *,
        api_key: str,
        clock: Clock,
        concurrency_limit: int = 20,
        webhook_url: str | None = None,
        rates: OutcomeRates | None = None,
        seed: int = 0,
        dial_log: Path | None = None,
        known_agent_ids: Collection[str] | None = None,
        hang_seconds: float = 60.0,
        wall: Clock | None = None,
        ring_s: float | None = None,
        talk_s: Mapping[str, float] | None = None,
    ) -> None:
        self.api_key = api_key
        self.clock = clock
        self.concurrency_limit = concurrency_limit
        self.webhook_url = webhook_url
        self.rates = rates or OutcomeRates()
        self.dial_log = dial_log
        self.known_agent_ids = set(known_agent_ids) if known_agent_ids is not None else None
        self.hang_seconds = hang_seconds
        # Fixed ring / talk seconds (per connected outcome) instead of drawn ones: short or long calls.
        self.ring_s = ring_s
        self.talk_s = dict(talk_s or {})
        # Signatures carry wall time (receivers check freshness against theirs), whatever the business clock.
        self.wall: Clock = wall or RealClock()
        self.payment_required = False
        self.dials: list[DialRecord] = []
        self.base_url = ""
        self.peak_live_calls = 0
        self.requests: Counter[str] = Counter()  # per endpoint
        self.responses: Counter[tuple[str, int]] = Counter()  # per (endpoint, HTTP status)
        self.webhooks: Counter[str] = Counter()  # posted / failed_attempts / dropped
        self._rng = random.Random(seed)
        self._calls: dict[str, _SimCall] = {}
        self._order: list[_SimCall] = []  # creation order; a call's seq is its index here
        self._by_key: dict[str, _SimCall] = {}
        self._key_expiry: deque[tuple[datetime, str, _SimCall]] = deque()  # creation order = expiry order
        self._by_meta: dict[tuple[str, str], list[_SimCall]] = {}  # (key, string value) -> calls in seq order
        self._live: set[str] = set()
        self._timeline: list[_Transition] = []
        self._ticks = 0
        self._wake = asyncio.Event()
        self._scripts: dict[str, deque[str]] = {}
        self._flagged: dict[str, str] = {}  # from-number -> the caller-id outcome every call from it ends in
        self._faults: dict[str, deque[_Fault]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._closing = asyncio.Event()

    # ----- control surface -------------------------------------------------------------------

    def script(self, to_number: str, *outcomes: str) -> None:
        """Outcomes for successive dials of ``to_number``; the last one repeats."""
        if not outcomes:
            raise ValueError("script needs at least one outcome")
        self._scripts[to_number] = deque(check_outcome(o) for o in outcomes)

    def flag_caller_id(self, from_number: str, outcome: str = "marked_as_spam") -> None:
        """Every later call from ``from_number`` ends ``outcome`` (``marked_as_spam`` or ``network_blocked``),
        whoever it dials: the carrier's verdict on our number, before any per-person script."""
        if outcome not in CALLER_ID_OUTCOMES:
            raise ValueError(f"flag_caller_id takes one of {', '.join(CALLER_ID_OUTCOMES)}, got {outcome!r}")
        self._flagged[from_number] = outcome

    def fail_next(self, endpoint: str, status: int, times: int = 1, *, after_create: bool = False) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; known: {', '.join(ENDPOINTS)}")
        if after_create and endpoint != "create-phone-call":
            raise ValueError("after_create applies to create-phone-call only")
        queue = self._faults.setdefault(endpoint, deque())
        queue.extend(_Fault(status, after_create) for _ in range(times))

    @property
    def calls(self) -> dict[str, dict[str, Any]]:
        now = self.clock.now()
        return {cid: render_call(c, now, self.base_url) for cid, c in self._calls.items()}

    def live_calls(self) -> int:
        self._advance(self.clock.now())
        return len(self._live)

    def stats(self) -> dict[str, Any]:
        """Counters since start: what a benchmark divides by attempts (e.g. get-calls per attempt)."""
        responses: dict[str, dict[str, int]] = {}
        for (endpoint, status), n in sorted(self.responses.items()):
            responses.setdefault(endpoint, {})[str(status)] = n
        return {
            "requests": dict(sorted(self.requests.items())),
            "responses": responses,
            "dials": len(self.dials),
            "calls": len(self._calls),
            "live_calls": self.live_calls(),
            "peak_live_calls": self.peak_live_calls,
            "concurrency_limit": self.concurrency_limit,
            "webhooks": dict(sorted(self.webhooks.items())),
        }

    # ----- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._auth])
        app.add_routes(
            [
                web.post("/v2/create-phone-call", self._create_phone_call, name="create-phone-call"),
                web.get("/v2/get-call/{call_id}", self._get_call, name="get-call"),
                web.post("/v2/stop-call/{call_id}", self._stop_call, name="stop-call"),
                web.post("/v3/list-calls", self._list_calls, name="list-calls"),
                web.get("/get-concurrency", self._get_concurrency, name="get-concurrency"),
                web.get("/_sim/dials", self._sim_dials),
                web.get("/_sim/calls", self._sim_calls),
                web.get("/_sim/stats", self._sim_stats),
            ]
        )
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._http = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self._spawn(self._run_timeline())
        log.info("retell_simulator_started", base_url=self.base_url)
        return self.base_url

    async def stop(self) -> None:
        self._closing.set()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> RetellSimulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ----- HTTP plumbing -----------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        endpoint = request.match_info.route.name
        if endpoint is None:  # /_sim/ admin routes and unknown paths: neither authenticated nor counted
            return await handler(request)
        self.requests[endpoint] += 1
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            response: web.StreamResponse = _error(401, "Unauthorized: invalid or missing API key")
        else:
            response = await handler(request)
        self.responses[(endpoint, response.status)] += 1
        return response

    def _take_fault(self, endpoint: str) -> _Fault | None:
        queue = self._faults.get(endpoint)
        return queue.popleft() if queue else None

    async def _fault_response(self, fault: _Fault) -> web.Response:
        if fault.status == HANG:
            # Hold the request past any sane client timeout; released early when the simulator stops.
            with anyio.move_on_after(self.hang_seconds):
                await self._closing.wait()
            return _error(504, "simulated hang")
        if fault.status == MALFORMED:
            return web.Response(status=200, text="<html>upstream glitch", content_type="text/html")
        headers = {"Retry-After": "1"} if fault.status == 429 else None
        return _error(fault.status, f"simulated failure {fault.status}", headers)

    # ----- endpoints ---------------------------------------------------------------------------

    async def _create_phone_call(self, request: web.Request) -> web.Response:
        fault = self._take_fault("create-phone-call")
        if fault is not None and not fault.after_create:
            return await self._fault_response(fault)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return _error(400, "Body must be an object")
        from_number, to_number = body.get("from_number"), body.get("to_number")
        if not isinstance(from_number, str) or not _E164.fullmatch(from_number):
            return _error(400, "from_number is required and must be in E.164 format")
        if not isinstance(to_number, str) or not _E164.fullmatch(to_number):
            return _error(400, "to_number must be in E.164 format")
        agent_id = body.get("override_agent_id") or DEFAULT_AGENT_ID
        if self.known_agent_ids is not None and agent_id not in self.known_agent_ids:
            return _error(422, f"Agent {agent_id} not found")
        variables = body.get("retell_llm_dynamic_variables") or {}
        if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
            return _error(400, "retell_llm_dynamic_variables values must be strings")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            return _error(400, "metadata must be an object")
        key = body.get("idempotency_key")
        if key is not None and not isinstance(key, str):
            return _error(400, "idempotency_key must be a string")

        now = self.clock.now()
        self._advance(now)  # ended calls free their place, expired keys are forgotten
        existing = self._by_key.get(key) if key else None
        if existing is not None and now - existing.created_at < IDEMPOTENCY_WINDOW:
            log.info("retell_sim_idempotent_repeat", call_id=existing.call_id, idempotency_key=key)
            call = existing
        else:
            if self.payment_required:
                return _error(402, "no_valid_payment: no valid payment method on file")
            if len(self._live) >= self.concurrency_limit:
                return _error(
                    429, f"concurrency_limit_reached: limit {self.concurrency_limit}", {"Retry-After": "1"}
                )
            call = self._place(now, from_number, to_number, agent_id, body, metadata, variables, key)
        if fault is not None:
            return await self._fault_response(fault)  # the call exists; the caller never hears of it
        return web.json_response(render_call(call, now, self.base_url), status=201)

    def _place(
        self,
        now: datetime,
        from_number: str,
        to_number: str,
        agent_id: str,
        body: Mapping[str, Any],
        metadata: dict[str, Any],
        variables: dict[str, str],
        key: str | None,
    ) -> _SimCall:
        override = body.get("agent_override") if isinstance(body.get("agent_override"), dict) else {}
        outcome = self._flagged.get(from_number) or self._next_outcome(to_number)
        plan = plan_call(
            outcome,
            self._rng,
            now=now,
            dynamic_variables=variables,
            ring_timeout_s=_override_ms(override, "ring_duration_ms") or DEFAULT_RING_TIMEOUT_S,
            max_duration_s=_override_ms(override, "max_call_duration_ms") or DEFAULT_MAX_DURATION_S,
            ring_s=self.ring_s,
            talk_s=self.talk_s.get(outcome),
        )
        version = body.get("override_agent_version")
        call = _SimCall(
            seq=len(self._order),
            call_id=f"call_{secrets.token_hex(12)}",
            created_at=now,
            plan=plan,
            from_number=from_number,
            to_number=to_number,
            agent_id=agent_id,
            agent_version=version if isinstance(version, int) else 1,
            metadata=metadata,
            dynamic_variables=variables,
            idempotency_key=key,
        )
        self._index(call)
        record = DialRecord(call.call_id, to_number, from_number, key, metadata, now)
        self.dials.append(record)
        if self.dial_log is not None:
            with self.dial_log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record.to_json()) + "\n")
                fh.flush()
        log.info("retell_sim_dial", call_id=call.call_id, to_number=to_number, outcome=plan.outcome)
        return call

    def _index(self, call: _SimCall) -> None:
        """Register a new live call everywhere it is looked up, and schedule its transitions."""
        self._calls[call.call_id] = call
        self._order.append(call)
        if call.idempotency_key:
            self._by_key[call.idempotency_key] = call
            self._key_expiry.append((call.created_at, call.idempotency_key, call))
        for name, value in call.metadata.items():
            if isinstance(value, str):
                self._by_meta.setdefault((name, value), []).append(call)
        self._live.add(call.call_id)
        self.peak_live_calls = max(self.peak_live_calls, len(self._live))
        if call.plan.connected:
            self._schedule(call.answer_at, "answer", call)
        self._schedule(call.natural_end, "end", call)

    def _next_outcome(self, to_number: str) -> str:
        script = self._scripts.get(to_number)
        if script:
            return script.popleft() if len(script) > 1 else script[0]
        return self.rates.draw(self._rng)

    async def _get_call(self, request: web.Request) -> web.Response:
        fault = self._take_fault("get-call")
        if fault is not None:
            return await self._fault_response(fault)
        call = self._calls.get(request.match_info["call_id"])
        if call is None:
            return _error(404, "Call not found")
        return web.json_response(render_call(call, self.clock.now(), self.base_url))

    async def _stop_call(self, request: web.Request) -> web.Response:
        fault = self._take_fault("stop-call")
        if fault is not None:
            return await self._fault_response(fault)
        call = self._calls.get(request.match_info["call_id"])
        if call is None:
            return _error(404, "Call not found")
        # Stopping a call that already ended is a no-op, so a max-duration guard never races the hang-up.
        now = self.clock.now()
        if call.stop(now):
            log.info("retell_sim_stop", call_id=call.call_id)
            self._schedule(now, "end", call)
            self._advance(now)  # call_ended goes out at once, not at the next tick
        return web.Response(status=204)

    async def _list_calls(self, request: web.Request) -> web.Response:
        fault = self._take_fault("list-calls")
        if fault is not None:
            return await self._fault_response(fault)
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return _error(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return _error(400, "Body must be an object")
        criteria = body.get("filter_criteria") or {}
        unsupported = set(criteria) - {"metadata"} if isinstance(criteria, dict) else {"?"}
        if unsupported:
            return _error(400, f"filter_criteria not supported by the simulator: {sorted(unsupported)}")
        specs = criteria.get("metadata", [])
        try:
            filters = [_metadata_filter(f) for f in specs]
        except ValueError as exc:
            return _error(400, str(exc))
        limit = body.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            return _error(400, "limit must be between 1 and 1000")

        def matches(call: _SimCall) -> bool:
            return all(f(call.metadata) for f in filters)

        candidates = self._candidates(specs)
        descending = body.get("sort_order", "descending") == "descending"
        after: _SimCall | None = None
        cursor = body.get("pagination_key")
        if cursor is not None:
            after = self._calls.get(cursor) if isinstance(cursor, str) else None
            if after is None or not matches(after):
                return _error(400, "Invalid pagination_key")
        page: list[_SimCall] = []
        has_more = False
        for call in _walk(candidates, after, descending):
            if not matches(call):
                continue
            if len(page) == limit:
                has_more = True
                break
            page.append(call)
        now = self.clock.now()
        return web.json_response(
            {
                "items": [render_call(c, now, self.base_url) for c in page],
                "has_more": has_more,
                "pagination_key": page[-1].call_id if has_more and page else None,
            }
        )

    def _candidates(self, specs: Iterable[Any]) -> list[_SimCall]:
        """Calls that can match: the smallest index list of a string ``eq`` filter, else every call."""
        lists = [
            self._by_meta.get((spec["key"], spec["value"]), [])
            for spec in specs
            if spec.get("type") == "string" and spec.get("op") == "eq" and isinstance(spec.get("value"), str)
        ]
        return min(lists, key=len) if lists else self._order

    async def _get_concurrency(self, request: web.Request) -> web.Response:
        fault = self._take_fault("get-concurrency")
        if fault is not None:
            return await self._fault_response(fault)
        return web.json_response(
            {
                "current_concurrency": self.live_calls(),
                "concurrency_limit": self.concurrency_limit,
                "base_concurrency": self.concurrency_limit,
                "purchased_concurrency": 0,
                "concurrency_purchase_limit": 0,
                "remaining_purchase_limit": 0,
                "concurrency_burst_enabled": False,
                "concurrency_burst_limit": 0,
            }
        )

    async def _sim_dials(self, request: web.Request) -> web.Response:
        return web.json_response([d.to_json() for d in self.dials])

    async def _sim_calls(self, request: web.Request) -> web.Response:
        now = self.clock.now()
        return web.json_response([c.timeline(now) for c in self._order])

    async def _sim_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    # ----- progression and webhooks ------------------------------------------------------------

    def _schedule(self, when: datetime, kind: str, call: _SimCall) -> None:
        earliest = self._timeline[0][0] if self._timeline else None
        self._ticks += 1
        heapq.heappush(self._timeline, (when, self._ticks, kind, call))
        if earliest is None or when < earliest:
            self._wake.set()  # the timeline task sleeps until the old earliest: look again

    def _advance(self, now: datetime) -> None:
        """Apply every transition due by ``now``: the live set, the webhooks, expired idempotency keys."""
        while self._timeline and self._timeline[0][0] <= now:
            _, _, kind, call = heapq.heappop(self._timeline)
            if call.finished:
                continue  # e.g. the natural end of a call stopped earlier
            if kind == "answer":
                if call.connected and not call.started_posted:  # a stop while ringing: never connected
                    call.started_posted = True
                    self._deliver(call, [("call_started", render_call(call, call.answer_at, self.base_url))])
                continue
            call.finished = True
            self._live.discard(call.call_id)
            ended_at = call.end_at
            self._deliver(call, [
                ("call_ended", render_call(call, ended_at, self.base_url, with_analysis=False)),
                ("call_analyzed", render_call(call, ended_at, self.base_url)),
            ])
        while self._key_expiry and now - self._key_expiry[0][0] >= IDEMPOTENCY_WINDOW:
            _, key, call = self._key_expiry.popleft()
            if self._by_key.get(key) is call:  # not a newer call placed under the same key
                del self._by_key[key]

    async def _run_timeline(self) -> None:
        """One task for all calls: apply transitions as the clock reaches them (or when woken early)."""
        while True:
            try:
                self._advance(self.clock.now())
            except Exception:
                log.exception("retell_sim_timeline_failed")
            self._wake.clear()
            next_at = self._timeline[0][0] if self._timeline else None
            async with anyio.create_task_group() as tg:

                async def reached(when: datetime) -> None:
                    await self.clock.sleep_until(when)
                    tg.cancel_scope.cancel()

                async def woken() -> None:
                    await self._wake.wait()
                    tg.cancel_scope.cancel()

                if next_at is not None:
                    tg.start_soon(reached, next_at)
                tg.start_soon(woken)

    def _deliver(self, call: _SimCall, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Post ``events`` in order, after any earlier delivery of the same call; calls do not wait on
        each other, so one slow delivery delays only its own call."""
        if not self.webhook_url or self._http is None:
            return
        previous = call.delivery

        async def run() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            try:
                for event, payload in events:
                    await self._post_event(event, payload)
            except Exception:
                # One call's webhook trouble must not go unnoticed, nor touch other calls.
                log.exception("retell_sim_webhook_task_failed", call_id=call.call_id)

        task = self._spawn(run())
        call.delivery = task

        def forget(done: asyncio.Task[None]) -> None:
            if call.delivery is done:
                call.delivery = None

        task.add_done_callback(forget)

    async def _post_event(self, event: str, call: dict[str, Any]) -> None:
        if not self.webhook_url or self._http is None:
            return
        body = json.dumps({"event": event, "call": call}).encode()
        for attempt in range(WEBHOOK_ATTEMPTS):
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, self.api_key, _ms(self.wall.now())),
            }
            try:
                async with self._http.post(
                    self.webhook_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
                ) as resp:
                    if resp.status < 300:
                        self.webhooks["posted"] += 1
                        return
                    reason = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = repr(exc)
            self.webhooks["failed_attempts"] += 1
            log.warning(
                "retell_sim_webhook_failed", webhook=event, call_id=call["call_id"], attempt=attempt, reason=reason
            )
            await anyio.sleep(0.05 * 2**attempt)  # real seconds: delivery, not business time
        self.webhooks["dropped"] += 1
        log.error("retell_sim_webhook_dropped", webhook=event, call_id=call["call_id"])


def _walk(calls: list[_SimCall], after: _SimCall | None, descending: bool) -> Iterator[_SimCall]:
    """``calls`` (in seq order) from just past the cursor ``after`` in the requested direction."""
    if descending:
        stop = len(calls) if after is None else bisect.bisect_left(calls, after.seq, key=lambda c: c.seq)
        return (calls[i] for i in range(stop - 1, -1, -1))
    start = 0 if after is None else bisect.bisect_right(calls, after.seq, key=lambda c: c.seq)
    return (calls[i] for i in range(start, len(calls)))


def _metadata_filter(spec: Any) -> Any:
    """Compile one ``filter_criteria.metadata`` entry into a predicate on a metadata dict."""
    if not isinstance(spec, dict) or not isinstance(spec.get("key"), str):
        raise ValueError("metadata filter needs a string key")
    key, kind, op, value = spec["key"], spec.get("type"), spec.get("op"), spec.get("value")
    if kind == "present" and op in ("pr", "np"):
        return lambda md: (key in md and md[key] is not None) == (op == "pr")
    if kind == "enum" and op == "in" and isinstance(value, list):
        return lambda md: md.get(key) in value
    if kind == "string" and isinstance(value, str):
        ops = {
            "eq": lambda s: s == value,
            "ne": lambda s: s != value,
            "sw": lambda s: s.startswith(value),
            "ew": lambda s: s.endswith(value),
            "co": lambda s: value in s,
        }
        if op in ops:
            test = ops[op]
            return lambda md: isinstance(md.get(key), str) and test(md[key])
    raise ValueError(f"unsupported metadata filter {spec!r}")


# ----- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", default=os.environ.get("RETELL_API_KEY", "sim-key"))
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--concurrency", type=int, default=20, help="live calls at once before a 429 (default 20)")
    parser.add_argument(
        "--webhook-url", default=None, help="where call_started/call_ended/call_analyzed are posted, signed"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dial-log", type=Path, default=None, help="append one JSON line per placed dial")
    parser.add_argument(
        "--script", action="append", default=[], metavar="PHONE=outcome,outcome", help="repeatable"
    )
    parser.add_argument("--rates", default=None, help="e.g. success=0.3,no_answer=0.4,voicemail=0.3")
    parser.add_argument(
        "--ring-s", type=float, default=None,
        help="fixed ring seconds before answer or give-up (no_answer rings the timeout)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=None,
        help="log to stderr at this level, personal data masked (default: unconfigured, every dial logged)",
    )
    parser.add_argument(
        "--talk-s",
        default=None,
        metavar="OUTCOME=SECONDS,...",
        help="fixed talk seconds per connected outcome, e.g. success=2 or long_call=86400 (capped by the call's max)",
    )


def parse_script(text: str) -> tuple[str, list[str]]:
    phone, sep, outcomes = text.partition("=")
    names = [o.strip() for o in outcomes.split(",") if o.strip()]
    if not sep or not phone.strip() or not names:
        raise ValueError(f"expected PHONE=outcome[,outcome...], got {text!r}")
    return phone.strip(), [check_outcome(n) for n in names]


def simulator_from_args(args: argparse.Namespace) -> RetellSimulator:
    # The CLI is the edge of the system: wall time is read here once to anchor business time.
    clock: Clock = RealClock() if args.speed == 1 else SimClock(datetime.now(UTC), speed=args.speed)
    sim = RetellSimulator(
        api_key=args.api_key,
        clock=clock,
        concurrency_limit=args.concurrency,
        webhook_url=args.webhook_url,
        rates=OutcomeRates.parse(args.rates) if args.rates else None,
        seed=args.seed,
        dial_log=args.dial_log,
        ring_s=args.ring_s,
        talk_s=parse_talk_seconds(args.talk_s) if args.talk_s else None,
    )
    for item in args.script:
        phone, outcomes = parse_script(item)
        sim.script(phone, *outcomes)
    return sim


async def run_from_args(args: argparse.Namespace) -> None:
    """Serve until cancelled (SIGINT), printing the base URL once listening."""
    if getattr(args, "log_level", None):
        from speechai.logs import configure_logging

        configure_logging(args.log_level, "console", "")
    sim = simulator_from_args(args)
    base_url = await sim.start(args.host, args.port)
    print(base_url, flush=True)
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await sim.stop()
