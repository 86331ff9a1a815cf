"""A Retell-compatible server for tests, the embedded default and benchmarks.

Same endpoints, payloads, errors, webhooks and signatures as Retell's API, over real HTTP. Call state
is computed lazily from timestamps of the injected clock on every read, and one background task per
call posts the webhooks at its transitions. Outcomes are scripted per number or drawn from seeded rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
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
    DEFAULT_MAX_DURATION_S,
    DEFAULT_RING_TIMEOUT_S,
    CallPlan,
    OutcomeRates,
    call_cost,
    check_outcome,
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


@dataclass
class _SimCall:
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
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)

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
        self.stop_event.set()
        return True


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
    ) -> None:
        self.api_key = api_key
        self.clock = clock
        self.concurrency_limit = concurrency_limit
        self.webhook_url = webhook_url
        self.rates = rates or OutcomeRates()
        self.dial_log = dial_log
        self.known_agent_ids = set(known_agent_ids) if known_agent_ids is not None else None
        self.hang_seconds = hang_seconds
        # Signatures carry wall time (receivers check freshness against theirs), whatever the business clock.
        self.wall: Clock = wall or RealClock()
        self.payment_required = False
        self.dials: list[DialRecord] = []
        self.base_url = ""
        self._rng = random.Random(seed)
        self._calls: dict[str, _SimCall] = {}
        self._by_key: dict[str, _SimCall] = {}
        self._scripts: dict[str, deque[str]] = {}
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
        now = self.clock.now()
        return sum(1 for c in self._calls.values() if c.status(now) in ("registered", "ongoing"))

    # ----- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._auth])
        app.add_routes(
            [
                web.post("/v2/create-phone-call", self._create_phone_call),
                web.get("/v2/get-call/{call_id}", self._get_call),
                web.post("/v2/stop-call/{call_id}", self._stop_call),
                web.post("/v3/list-calls", self._list_calls),
                web.get("/get-concurrency", self._get_concurrency),
                web.get("/_sim/dials", self._sim_dials),
            ]
        )
        self._closing = asyncio.Event()
        self._http = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
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

    # ----- HTTP plumbing -----------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Unauthorized: invalid or missing API key")
        return await handler(request)

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
        existing = self._by_key.get(key) if key else None
        if existing is not None and now - existing.created_at < IDEMPOTENCY_WINDOW:
            log.info("retell_sim_idempotent_repeat", call_id=existing.call_id, idempotency_key=key)
            call = existing
        else:
            if self.payment_required:
                return _error(402, "no_valid_payment: no valid payment method on file")
            if self.live_calls() >= self.concurrency_limit:
                return _error(
                    429, f"concurrency_limit_reached: limit {self.concurrency_limit}", {"Retry-After": "1"}
                )
            call = self._place(
                now, from_number, to_number, agent_id, body, metadata, variables, key
            )
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
        plan = plan_call(
            self._next_outcome(to_number),
            self._rng,
            now=now,
            dynamic_variables=variables,
            ring_timeout_s=_override_ms(override, "ring_duration_ms") or DEFAULT_RING_TIMEOUT_S,
            max_duration_s=_override_ms(override, "max_call_duration_ms") or DEFAULT_MAX_DURATION_S,
        )
        version = body.get("override_agent_version")
        call = _SimCall(
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
        self._calls[call.call_id] = call
        if key:
            self._by_key[key] = call
        record = DialRecord(call.call_id, to_number, from_number, key, metadata, now)
        self.dials.append(record)
        if self.dial_log is not None:
            with self.dial_log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record.to_json()) + "\n")
                fh.flush()
        log.info("retell_sim_dial", call_id=call.call_id, to_number=to_number, outcome=plan.outcome)
        task = asyncio.get_running_loop().create_task(self._drive(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return call

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
        if call.stop(self.clock.now()):
            log.info("retell_sim_stop", call_id=call.call_id)
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
        try:
            filters = [_metadata_filter(f) for f in criteria.get("metadata", [])]
        except ValueError as exc:
            return _error(400, str(exc))
        limit = body.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            return _error(400, "limit must be between 1 and 1000")
        ordered = sorted(self._calls.values(), key=lambda c: c.created_at)
        if body.get("sort_order", "descending") == "descending":
            ordered.reverse()
        matching = [c for c in ordered if all(f(c.metadata) for f in filters)]
        start = 0
        cursor = body.get("pagination_key")
        if cursor is not None:
            ids = [c.call_id for c in matching]
            if cursor not in ids:
                return _error(400, "Invalid pagination_key")
            start = ids.index(cursor) + 1
        page = matching[start : start + limit]
        has_more = start + limit < len(matching)
        now = self.clock.now()
        return web.json_response(
            {
                "items": [render_call(c, now, self.base_url) for c in page],
                "has_more": has_more,
                "pagination_key": page[-1].call_id if has_more and page else None,
            }
        )

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

    # ----- progression and webhooks ------------------------------------------------------------

    async def _sleep_until_or_stopped(self, call: _SimCall, when: datetime) -> None:
        async with anyio.create_task_group() as tg:

            async def sleeper() -> None:
                await self.clock.sleep_until(when)
                tg.cancel_scope.cancel()

            async def stopped() -> None:
                await call.stop_event.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(sleeper)
            tg.start_soon(stopped)

    async def _drive(self, call: _SimCall) -> None:
        try:
            await self._drive_steps(call)
        except Exception:
            # One call's webhook trouble must not go unnoticed, nor touch other calls.
            log.exception("retell_sim_call_task_failed", call_id=call.call_id)

    async def _drive_steps(self, call: _SimCall) -> None:
        """Post the webhooks of one call at its transitions in business time."""
        await self._sleep_until_or_stopped(call, call.answer_at)
        if call.connected:
            await self._post_event("call_started", render_call(call, call.answer_at, self.base_url))
            await self._sleep_until_or_stopped(call, call.end_at)
        # A stop can only bring the end forward, so wait for whichever end now holds.
        await self.clock.sleep_until(call.end_at)
        ended_at = call.end_at
        await self._post_event("call_ended", render_call(call, ended_at, self.base_url, with_analysis=False))
        await self._post_event("call_analyzed", render_call(call, ended_at, self.base_url))

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
                        return
                    reason = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = repr(exc)
            log.warning(
                "retell_sim_webhook_failed", webhook=event, call_id=call["call_id"], attempt=attempt, reason=reason
            )
            await anyio.sleep(0.05 * 2**attempt)  # real seconds: delivery, not business time
        log.error("retell_sim_webhook_dropped", webhook=event, call_id=call["call_id"])


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
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dial-log", type=Path, default=None, help="append one JSON line per placed dial")
    parser.add_argument(
        "--script", action="append", default=[], metavar="PHONE=outcome,outcome", help="repeatable"
    )
    parser.add_argument("--rates", default=None, help="e.g. success=0.3,no_answer=0.4,voicemail=0.3")


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
    )
    for item in args.script:
        phone, outcomes = parse_script(item)
        sim.script(phone, *outcomes)
    return sim


async def run_from_args(args: argparse.Namespace) -> None:
    """Serve until cancelled (SIGINT), printing the base URL once listening."""
    sim = simulator_from_args(args)
    base_url = await sim.start(args.host, args.port)
    print(base_url, flush=True)
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await sim.stop()
