"""The aiohttp control endpoint: builds the app of control API v1 (``speechai.api``) with its guards.

Routes, schemas, keys and roles, audit and rate limits live in ``speechai.api``; the OpenAPI document
is at ``/openapi.json`` and its page at ``/docs`` (docs/api.md). Open without a key: ``/health``,
``/webhooks/retell`` (it carries its own HMAC signature), ``/openapi.json``, ``/docs`` and ``/``.
Every other route needs ``Authorization: Bearer <API key or control token>``; the control token
(``SPEECHAI_CONTROL_TOKEN`` or the generated token file) is an admin key.

Input limits (docs/operations.md, "Input limits"): JSON bodies at most ``JSON_MAX_BYTES`` and parsed
strictly (``webhooks.parse_json``); the upload route up to its file limit plus form fields; webhooks
``WEBHOOK_MAX_BYTES``. A request is refused with 503 past ``max_concurrent_requests`` at once and
cancelled past its timeout; an idle or half-sent connection is closed after ``keepalive_timeout_s``.
At most ``max_connections`` connections are open: past it a new one evicts the oldest connection with
no request in progress (idle or half-sent), or, when every one is busy, is answered 503 and closed.
Failed authentication is rate-limited per client address (429 with ``Retry-After``).
No answer is a bare 500: bad input is a 4xx naming the problem; an unavailable database is a 503.
Every error is RFC 9457 problem details (``speechai.api.problems``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import structlog
from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import BadHttpMessage
from bson.errors import BSONError
from pymongo.errors import PyMongoError

from speechai.api.audit import record
from speechai.api.auth import (
    PRINCIPAL_KEY,
    PUBLIC,
    Access,
    access_of,
    account_in_request,
    allowed,
    authenticate,
    foreign_thing,
    public,
    requires,
)
from speechai.api.openapi import Op, build_document, docs_response, document_response, extra_op
from speechai.api.problems import ApiError, problem, problem_body
from speechai.api.ratelimit import AUTH_FAILURE_BURST, AUTH_FAILURE_PER_S, BURST, RATE_PER_S, RateLimiter
from speechai.api.routes import DEFERRED_CANCEL_EVERY_S, Routes
from speechai.api.schemas import PAGE_DEFAULT, PAGE_MAX, do_not_call_key
from speechai.api.upload import MAX_UPLOAD_BYTES
from speechai.runtime.webhooks import WEBHOOK_MAX_BYTES, JsonBodyError, WebhookReceiver
from speechai.store.api_models import Role

__all__ = ["PAGE_DEFAULT", "PAGE_MAX", "ControlApi", "do_not_call_key"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("speechai.control")

OPEN_PATHS = {"/health", "/webhooks/retell", "/openapi.json", "/docs", "/"}
UPLOAD_PATH = "/batches/upload"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}

JSON_MAX_BYTES = 2**20
# The upload's file limit plus room for its form fields.
UPLOAD_MAX_BYTES = MAX_UPLOAD_BYTES + 2**20
# aiohttp's own cap on request.read()/post(); every route of this app reads with a smaller cap itself.
APP_MAX_BYTES = 20 * 2**20
REQUEST_TIMEOUT_S = 30.0
UPLOAD_TIMEOUT_S = 900.0  # a 100,000-row load takes about 80 s on two cores; reports get it too
KEEPALIVE_TIMEOUT_S = 15.0
LINGERING_TIME_S = 2.0
# Webhook bursts of thousands of live calls fit; bounded memory: this many times the largest body.
MAX_CONCURRENT_REQUESTS = 256
# Open connections (idle, half-sent or busy): each costs a file descriptor and a few KB.
MAX_CONNECTIONS = 1024
CAP_WARN_EVERY_S = 10.0  # the connection-cap warning is logged at most this often (with counts)
MIN_TOKEN_CHARS = 24
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _route_limit(path: str) -> int:
    if path == UPLOAD_PATH:
        return UPLOAD_MAX_BYTES
    return WEBHOOK_MAX_BYTES if path == "/webhooks/retell" else JSON_MAX_BYTES


def _as_problem(response: web.StreamResponse) -> web.StreamResponse:
    """An error answered as ``{"error": ...}`` JSON (the loader's and webhook routes') in the one shape."""
    if response.status < 400 or not isinstance(response, web.Response) or response.content_type != "application/json":
        return response
    try:
        body = json.loads(response.text or "")
    except (ValueError, TypeError):
        return response
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or "type" in body:
        return response
    extra = {k: v for k, v in body.items() if k not in ("error", "type", "title", "status", "detail")}
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "connection")}
    out = problem(response.status, body["error"], headers=headers or None, **extra)
    if response.headers.get("Connection", "").lower() == "close":
        out.force_close()
    return out


def _http_exception_problem(exc: web.HTTPException) -> web.Response:
    detail = exc.reason
    try:
        body = json.loads(exc.text or "")
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            detail = body["error"]
    except (ValueError, TypeError):
        pass
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("retry-after", "allow")}
    return problem(exc.status, detail, headers=headers or None)


@web.middleware
async def size_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A declared body above the route's limit is refused before a byte of it is read."""
    limit = _route_limit(request.path)
    if request.content_length is not None and request.content_length > limit:
        return problem(413, f"body of {request.content_length} bytes is larger than this route's limit of "
                            f"{limit} bytes")
    return await handler(request)


def _fault_response(request: web.Request, exc: Exception) -> web.Response:
    """The answer for an exception no handler turned into one: never a bare 500 for bad input."""
    if isinstance(exc, RecursionError | JsonBodyError):
        return problem(400, f"body is not acceptable JSON: {str(exc)[:200] or 'nested too deep'}")
    if isinstance(exc, BadHttpMessage):
        # raised while a handler reads the body (a multipart part header aiohttp cannot parse)
        return problem(400, f"malformed request body: {str(exc)[:200]}")
    if isinstance(exc, OverflowError | BSONError | UnicodeEncodeError):
        # a value the database cannot keep: a number past 64 bits, text that is not valid Unicode
        log.warning("control_request_refused", path=request.path, error=f"{type(exc).__name__}: {exc}"[:300])
        return problem(400, f"a value cannot be stored: {str(exc)[:200]}")
    if isinstance(exc, PyMongoError):
        log.warning("control_database_unavailable", path=request.path, error=str(exc)[:300])
        return problem(503, "database unavailable; try again", headers={"Retry-After": "5"}, retry_after_s=5)
    log.error("control_request_failed", path=request.path, exc_info=exc)
    return problem(500, f"internal error ({type(exc).__name__}); the service keeps running")


def guard_middleware(*, max_concurrent: int, timeout_s: float, upload_timeout_s: float) -> Any:
    """Caps requests in progress (503 past it), bounds each one's time, and answers every failure."""
    active = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal active
        if active >= max_concurrent:
            return problem(503, f"more than {max_concurrent} requests in progress; try again",
                           headers={"Retry-After": "1"}, retry_after_s=1)
        active += 1
        # loads and reports read every row of a batch: they get the long bound
        long = request.path == UPLOAD_PATH or request.path.startswith("/reports/")
        limit = upload_timeout_s if long else timeout_s
        try:
            with anyio.fail_after(limit):
                return _as_problem(await handler(request))
        except ApiError as exc:
            return exc.response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_exception_problem(exc)
        except TimeoutError:
            log.warning("control_request_timeout", path=request.path, limit_s=limit)
            refused = problem(503, f"request not completed within {limit:g} s (reading the body and answering)")
            refused.force_close()  # the body may be half read: this connection cannot carry another request
            return refused
        except Exception as exc:  # the safety net: an answer, and the service serves on
            return _fault_response(request, exc)
        finally:
            active -= 1

    return middleware


def access_middleware(*, token: str, limiter: RateLimiter, clock: Any,
                      auth_failures: RateLimiter | None = None) -> Any:
    """Authenticates the key, applies its rate limit, checks the route's role and account, and writes the
    audit entry of a state-changing request that succeeded. Failed authentications take from the
    client address's bucket of ``auth_failures``: a flood of bad tokens is answered 429."""
    failures = auth_failures or RateLimiter(AUTH_FAILURE_PER_S, AUTH_FAILURE_BURST)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        access: Access = PUBLIC if request.path in OPEN_PATHS else access_of(route.handler)
        if access.public:
            return await handler(request)
        who = await authenticate(request.headers.get("Authorization", ""), token)
        if who is None:
            wait = failures.take(f"ip:{request.remote or '?'}")
            if wait > 0:
                return problem(429, f"too many failed authentications from this address ({failures.rate:g}/s, "
                                    f"bursts of {failures.burst}); retry in {wait:.2f} s",
                               headers={"Retry-After": str(max(1, math.ceil(wait)))}, retry_after_s=round(wait, 3))
            return problem(401, "missing or wrong bearer token (an API key or the control token)",
                           headers={"WWW-Authenticate": "Bearer"})
        wait = limiter.take(who.key_id)
        if wait > 0:
            return problem(429, f"rate limit of key {who.key_id} reached ({limiter.rate:g} requests/s, bursts of "
                                f"{limiter.burst}); retry in {wait:.2f} s",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))}, retry_after_s=round(wait, 3))
        request[PRINCIPAL_KEY] = who
        if not allowed(access, who):
            # another account's thing looks absent whatever the role (no existence leak)
            if (missing := await foreign_thing(request, access, who)) is not None:
                return problem(404, missing)
            return problem(403, f"a {who.role.value} key may not call {request.method} {request.path[:100]}")
        account = account_in_request(request, access)
        if account is not None and not who.sees(account):
            return problem(404, f"no account {account[:100]!r}")
        try:
            response = await handler(request)
        except ApiError as exc:
            if request.method in MUTATING:
                await record(request, who, exc.status, clock.now())
            raise
        if request.method in MUTATING:
            await record(request, who, response.status, clock.now())
        return response

    return middleware


async def expect_check(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` answered only for a body within the route's limit (else 413 before the
    client sends it); any other expectation is 417. aiohttp's own check fails on non-UTF-8 bytes."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        return problem(417, f"unsupported Expect header {expect[:40]!r}; only 100-continue")
    limit = _route_limit(request.path)
    if request.content_length is not None and request.content_length > limit:
        return problem(413, f"body of {request.content_length} bytes is larger than this route's limit of "
                            f"{limit} bytes")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


def with_expect_check(route: web.RouteDef) -> web.RouteDef:
    return web.RouteDef(route.method, route.path, route.handler, {**route.kwargs, "expect_handler": expect_check})


_REFUSED_BODY = json.dumps(problem_body(503, "too many open connections; try again", retry_after_s=1)).encode()
_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + str(len(_REFUSED_BODY)).encode()
            + b"\r\n\r\n" + _REFUSED_BODY)


class _Refused(asyncio.Protocol):
    """A connection past the cap: answered 503 at once and closed (no request is read)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSED)
        transport.close()


class ConnectionCap:
    """The listening socket's protocol factory: aiohttp's ``web.Server`` with a cap on open connections.

    Past ``cap`` a new connection evicts the oldest one with no request in progress (idle keep-alive or a
    request line/headers still arriving: what a slow-loris client holds), so a flood of silent sockets
    cannot lock clients out; when every open connection is busy the new one gets 503 and is closed."""

    def __init__(self, server: web.Server, cap: int, now: Callable[[], float] = time.monotonic) -> None:
        self.server, self.cap, self._now = server, cap, now
        self.evicted = self.refused = 0  # since the last warning
        self._warned_at = -math.inf

    def open_connections(self) -> list[Any]:
        # closed handlers stay in the server's list until their task ends; they hold no socket
        return [h for h in self.server.connections if h.transport is not None]

    def __call__(self) -> asyncio.BaseProtocol:
        conns = self.open_connections()
        if len(conns) >= self.cap:
            # aiohttp's own flag for "a request is being handled" (it closes the others first on shutdown)
            idle = next((h for h in conns if not getattr(h, "_request_in_progress", True)), None)
            if idle is None:
                self.refused += 1
                self._warn(len(conns))
                return _Refused()
            idle.force_close()
            self.evicted += 1
            self._warn(len(conns))
        return self.server()

    def _warn(self, open_now: int) -> None:
        now = self._now()
        if now - self._warned_at < CAP_WARN_EVERY_S:
            return
        log.warning("control_connection_cap_reached", cap=self.cap, open=open_now, evicted_idle=self.evicted,
                    refused_busy=self.refused, hint="many idle or half-sent connections: a client flooding")
        self._warned_at, self.evicted, self.refused = now, 0, 0


class CappedTCPSite(web.TCPSite):
    """``web.TCPSite`` whose socket serves through :class:`ConnectionCap`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int,
                 backlog: int = 128) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self.max_connections = max_connections
        self.cap: ConnectionCap | None = None

    async def start(self) -> None:
        # BaseSite.start registers the site with its runner; the socket is then made as TCPSite.start
        # makes it, with the capped factory in place of the runner's server
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.cap = ConnectionCap(server, self.max_connections)
        self._server = await asyncio.get_running_loop().create_server(
            self.cap, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlApi:
    """``rate_limit_per_s``/``rate_limit_burst``: each key's token bucket (defaults 50 requests/s, bursts
    of 200); past it a request is 429 with ``Retry-After``. ``auth_failures_per_s``/``auth_failure_burst``:
    the same for failed authentications per client address. ``max_connections``: open connections."""

    def __init__(self, *, token: str, scheduler_ref: Any, webhooks: WebhookReceiver,
                 instance_id: str, clock: Any, extra_routes: Iterable[web.RouteDef] = (),
                 request_timeout_s: float = REQUEST_TIMEOUT_S, upload_timeout_s: float = UPLOAD_TIMEOUT_S,
                 keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
                 max_concurrent_requests: int = MAX_CONCURRENT_REQUESTS,
                 json_max_bytes: int = JSON_MAX_BYTES, rate_limit_per_s: float = RATE_PER_S,
                 rate_limit_burst: int = BURST, deferred_cancel_every_s: float = DEFERRED_CANCEL_EVERY_S,
                 auth_failures_per_s: float = AUTH_FAILURE_PER_S, auth_failure_burst: int = AUTH_FAILURE_BURST,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.max_connections = max_connections
        self.site: CappedTCPSite | None = None
        self.clock = clock
        self.keepalive_timeout_s = keepalive_timeout_s
        self.deferred_cancel_every_s = deferred_cancel_every_s
        self._token_chars = len(token)
        self.routes = Routes(scheduler_ref=scheduler_ref, webhooks=webhooks, instance_id=instance_id, clock=clock,
                             json_max_bytes=json_max_bytes)
        self.limiter = RateLimiter(rate_limit_per_s, rate_limit_burst)
        self.auth_failures = RateLimiter(auth_failures_per_s, auth_failure_burst)
        guard = guard_middleware(max_concurrent=max_concurrent_requests, timeout_s=request_timeout_s,
                                 upload_timeout_s=upload_timeout_s)
        access = access_middleware(token=token, limiter=self.limiter, clock=clock, auth_failures=self.auth_failures)
        self.app = web.Application(middlewares=[guard, access, size_middleware], client_max_size=APP_MAX_BYTES)
        extra = list(extra_routes)
        own = [*self.routes.operations(),
               Op("GET", "/openapi.json", self.openapi, "This document", "service",
                  more={200: ("OpenAPI 3.1", None)}),
               Op("GET", "/docs", self.docs, "A page showing this document", "service",
                  more={200: ("HTML page", None, "text/html")})]
        self.document = build_document([*own, *(extra_op(r) for r in extra)], title="SpeechAI control API",
                                       version="1")
        routes = [
            *(op.route() for op in own),
            *extra,
            # last: any other path gets a JSON 404 through the middlewares, and the Expect check below
            # (any character: a path with an encoded newline must reach the Expect check too, not
            # aiohttp's own, which fails on non-UTF-8 bytes)
            web.route("*", r"/{tail:[\s\S]*}", self.no_route),
        ]
        self.app.add_routes([with_expect_check(r) for r in routes])
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    @public
    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI 3.1 document of this API (open)."""
        return document_response(self.document)

    @public
    async def docs(self, request: web.Request) -> web.Response:
        """A page rendering /openapi.json (open; no data)."""
        return docs_response()

    @requires(Role.OPERATOR, Role.VIEWER, Role.BILLING, account_from="handler")
    async def no_route(self, request: web.Request) -> web.Response:
        return problem(404, f"no route {request.method} {request.path[:100]!r}")

    async def start(self, host: str, port: int) -> None:
        """Bind now, so a port in use fails start-up with a clear error instead of a restart loop."""
        if not _is_loopback(host):
            log.warning("control_endpoint_exposed", host=host,
                        hint="bound beyond loopback: put it behind a TLS reverse proxy or a firewall")
        if self._token_chars < MIN_TOKEN_CHARS:
            log.warning("control_token_short", chars=self._token_chars, minimum=MIN_TOKEN_CHARS)
        # keepalive_timeout also closes a connection whose request line or headers never complete;
        # handler_cancellation stops the work of a client that went away (loads and webhooks survive it);
        # lingering_time: how long the rest of a refused body is read (and dropped) after the answer, so a
        # client still sending gets the answer rather than a reset, without holding the connection long.
        self._runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=self.keepalive_timeout_s,
                                     handler_cancellation=True, lingering_time=LINGERING_TIME_S,
                                     max_line_size=8190, max_field_size=8190, max_headers=64)
        await self._runner.setup()
        try:
            self.site = CappedTCPSite(self._runner, host, port, max_connections=self.max_connections, backlog=128)
            await self.site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1] if self._runner.addresses else port

    async def _deferred_cancels(self) -> None:
        """Applies cancellations that waited for a live call to end; a database outage only delays them."""
        while True:
            await anyio.sleep(self.deferred_cancel_every_s)
            try:
                await self.routes.apply_deferred_cancels()
            except PyMongoError as exc:
                log.warning("deferred_cancel_waiting_for_database", error=str(exc)[:300])

    async def serve_forever(self) -> None:
        assert self._runner is not None, "start() first"
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._deferred_cancels)
                await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._runner.cleanup()

