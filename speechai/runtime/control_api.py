"""The aiohttp control endpoint: health, batch pause/resume/settings, job inspection, Retell webhooks.

Every route but ``/health`` and the webhook (which carries its own HMAC signature) needs
``Authorization: Bearer <control token>``.

Input limits (docs/operations.md, "Input limits"): JSON bodies at most ``JSON_MAX_BYTES`` and parsed
strictly (``webhooks.parse_json``); the upload route up to its file limit plus form fields; webhooks
``WEBHOOK_MAX_BYTES``. A request is refused with 503 past ``max_concurrent_requests`` at once and
cancelled past its timeout; an idle or half-sent connection is closed after ``keepalive_timeout_s``.
No answer is a bare 500: bad input is a 4xx naming the problem; an unavailable database is a 503.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import phonenumbers
import structlog
from aiohttp import HttpVersion11, web
from bson import ObjectId
from bson.errors import BSONError, InvalidId
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError, PyMongoError

from speechai.domain.settings import CallSettings, merge_call_settings, settings_changes
from speechai.loader.normalize import parse_phone, parse_rut
from speechai.loader.upload import MAX_UPLOAD_BYTES
from speechai.runtime.scheduler import Wake
from speechai.runtime.webhooks import WEBHOOK_MAX_BYTES, JsonBodyError, WebhookReceiver, parse_json, read_body
from speechai.store.accounts import top_up
from speechai.store.models import Account, Batch, BatchStatus, DoNotCall, Job, JobState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("speechai.control")

OPEN_PATHS = {"/health", "/webhooks/retell"}
UPLOAD_PATH = "/batches/upload"
# Bounds that keep one top-up far inside the database's 64-bit integers (a typo, not a real order).
MAX_TOPUP = {"cents": 10**12, "minutes": 10**9}
# Account limits an operator may set (PUT/PATCH /accounts/{id}/settings).
ACCOUNT_LIMITS = {"max_concurrent_calls": (1, 10_000), "daily_call_limit": (1, 10_000_000)}

JSON_MAX_BYTES = 2**20
# The upload's file limit plus room for its form fields.
UPLOAD_MAX_BYTES = MAX_UPLOAD_BYTES + 2**20
# aiohttp's own cap on request.read()/post(); every route of this app reads with a smaller cap itself.
APP_MAX_BYTES = 20 * 2**20
REQUEST_TIMEOUT_S = 30.0
UPLOAD_TIMEOUT_S = 900.0  # a 100,000-row load takes about 80 s on two cores
KEEPALIVE_TIMEOUT_S = 15.0
LINGERING_TIME_S = 2.0
# Webhook bursts of thousands of live calls fit; bounded memory: this many times the largest body.
MAX_CONCURRENT_REQUESTS = 256
MIN_TOKEN_CHARS = 24

PAGE_DEFAULT, PAGE_MAX = 100, 1000
_LIMIT_RE = re.compile(r"[0-9]{1,7}")
_MAX_CURSOR_CHARS = 1024
_MAX_ID_CHARS = 256
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _http_error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")


def _short(value: Any, limit: int = 200) -> Any:
    """A value echoed in an error: as given when small, else its shortened repr."""
    text = json.dumps(value, default=str)
    return value if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            # Header bytes that are not UTF-8 arrive as surrogates: compare them, never fail on them.
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogatepass")
            if not hmac.compare_digest(given, expected):
                return _error(401, "missing or wrong bearer token")
        return await handler(request)

    return middleware


def _route_limit(path: str) -> int:
    if path == UPLOAD_PATH:
        return UPLOAD_MAX_BYTES
    return WEBHOOK_MAX_BYTES if path == "/webhooks/retell" else JSON_MAX_BYTES


@web.middleware
async def size_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A declared body above the route's limit is refused before a byte of it is read."""
    limit = _route_limit(request.path)
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"body of {request.content_length} bytes is larger than this route's limit of "
                           f"{limit} bytes")
    return await handler(request)


def _fault_response(request: web.Request, exc: Exception) -> web.Response:
    """The answer for an exception no handler turned into one: never a bare 500 for bad input."""
    if isinstance(exc, RecursionError | JsonBodyError):
        return _error(400, f"body is not acceptable JSON: {str(exc)[:200] or 'nested too deep'}")
    if isinstance(exc, OverflowError | BSONError | UnicodeEncodeError):
        # a value the database cannot keep: a number past 64 bits, text that is not valid Unicode
        log.warning("control_request_refused", path=request.path, error=f"{type(exc).__name__}: {exc}"[:300])
        return _error(400, f"a value cannot be stored: {str(exc)[:200]}")
    if isinstance(exc, PyMongoError):
        log.warning("control_database_unavailable", path=request.path, error=str(exc)[:300])
        return _error(503, "database unavailable; try again", retry_after_s=5)
    log.error("control_request_failed", path=request.path, exc_info=exc)
    return _error(500, f"internal error ({type(exc).__name__}); the service keeps running")


def guard_middleware(*, max_concurrent: int, timeout_s: float, upload_timeout_s: float) -> Any:
    """Caps requests in progress (503 past it), bounds each one's time, and answers every failure."""
    active = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal active
        if active >= max_concurrent:
            return _error(503, f"more than {max_concurrent} requests in progress; try again",
                          retry_after_s=1)
        active += 1
        limit = upload_timeout_s if request.path == UPLOAD_PATH else timeout_s
        try:
            with anyio.fail_after(limit):
                return await handler(request)
        except web.HTTPException:
            raise
        except TimeoutError:
            log.warning("control_request_timeout", path=request.path, limit_s=limit)
            refused = _error(503, f"request not completed within {limit:g} s (reading the body and answering)")
            refused.force_close()  # the body may be half read: this connection cannot carry another request
            return refused
        except Exception as exc:  # the safety net: an answer, and the service serves on
            return _fault_response(request, exc)
        finally:
            active -= 1

    return middleware


async def expect_check(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` answered only for a body within the route's limit (else 413 before the
    client sends it); any other expectation is 417. aiohttp's own check fails on non-UTF-8 bytes."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        return _error(417, f"unsupported Expect header {expect[:40]!r}; only 100-continue")
    limit = _route_limit(request.path)
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"body of {request.content_length} bytes is larger than this route's limit of "
                           f"{limit} bytes")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


def with_expect_check(route: web.RouteDef) -> web.RouteDef:
    return web.RouteDef(route.method, route.path, route.handler, {**route.kwargs, "expect_handler": expect_check})


def do_not_call_key(text: str) -> str:
    """The key as jobs carry it: a RUT as '12345678-5', a phone in E.164; ValueError says why not."""
    text = text.strip()
    if text.startswith("+"):
        try:
            num = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            num = None
        if num is None or not phonenumbers.is_possible_number(num):
            raise ValueError(f"key {text!r} is not a phone number in E.164 form (+56987654321)")
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    readings = set()
    for parse in (parse_rut, lambda t: parse_phone(t, "CL").number):
        try:
            readings.add(parse(text))
        except ValueError:
            pass
    if not readings:
        raise ValueError(f"key must be a RUT (12345678-5) or a phone (+56987654321), got {text!r}")
    if len(readings) > 1:
        raise ValueError(f"key {text!r} reads as RUT and as phone ({' or '.join(sorted(readings))}); "
                         "write the RUT with its dash or the phone with its +56")
    return readings.pop()


def _unknown_keys(body: dict[str, Any], allowed: set[str]) -> web.Response | None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        return _error(422, f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")
    return None


def _problems(exc: Exception) -> list[dict[str, Any]]:
    """Field/value problems of a failed settings validation, whatever the validator raised."""
    if isinstance(exc, ValidationError):
        return [{"field": ".".join(map(str, e["loc"])), "value": _short(e.get("input")), "error": e["msg"]}
                for e in exc.errors()]
    return [{"field": None, "value": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}]


# --- pagination -----------------------------------------------------------------------------------


def encode_cursor(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> str:
    """The key a page ended on; ValueError when ``cursor`` is not one this endpoint returned."""
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise ValueError(f"cursor is longer than {_MAX_CURSOR_CHARS} characters")
    try:
        raw = cursor.encode("ascii")
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode()
    except (UnicodeError, binascii.Error):
        raise ValueError(f"cursor {cursor[:80]!r} is not one this endpoint returned") from None


def page_params(request: web.Request) -> tuple[int, str | None]:
    """``(limit, key after which the page starts)`` from the query; HTTP 422 naming a bad one."""
    query = request.query
    unknown = sorted(set(query) - {"limit", "cursor"})
    if unknown:
        raise _http_error(web.HTTPUnprocessableEntity, f"unknown query parameter(s) "
                                                       f"{', '.join(repr(k[:40]) for k in unknown)}; "
                                                       "allowed: cursor, limit")
    for name in ("limit", "cursor"):
        if len(query.getall(name, [])) > 1:
            raise _http_error(web.HTTPUnprocessableEntity, f"{name} given more than once")
    text = query.get("limit")
    limit = PAGE_DEFAULT
    if text is not None:
        if not _LIMIT_RE.fullmatch(text) or not 1 <= int(text) <= PAGE_MAX:
            raise _http_error(web.HTTPUnprocessableEntity,
                              f"limit must be a whole number from 1 to {PAGE_MAX}, got {text[:40]!r}")
        limit = int(text)
    cursor = query.get("cursor")
    if cursor is None:
        return limit, None
    try:
        return limit, decode_cursor(cursor)
    except ValueError as exc:
        raise _http_error(web.HTTPUnprocessableEntity, str(exc)) from None


def _page(rows: list[Any], limit: int, key: Callable[[Any], str]) -> tuple[list[Any], str | None]:
    """The first ``limit`` of ``limit + 1`` rows read, and the cursor to the rest (None: no more)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(key(rows[-1]))


async def batch_counts(batch_id: str) -> dict[str, int]:
    return (await page_counts([batch_id]))[batch_id]


async def page_counts(batch_ids: list[str]) -> dict[str, dict[str, int]]:
    """Jobs per state of each batch, in one aggregate (``$match batch_id $in`` on the batch index)."""
    states = [s.value for s in JobState]
    rows = await Job.get_pymongo_collection().aggregate([
        {"$match": {"batch_id": {"$in": batch_ids}}},
        {"$group": {"_id": "$batch_id",
                    **{s: {"$sum": {"$cond": [{"$eq": ["$state", s]}, 1, 0]}} for s in states}}},
    ])
    counts = {b: dict.fromkeys(states, 0) for b in batch_ids}
    async for row in rows:
        if row["_id"] in counts:
            counts[row["_id"]] = {s: int(row.get(s, 0)) for s in states}
    return counts


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlApi:
    def __init__(self, *, token: str, scheduler_ref: Any, webhooks: WebhookReceiver,
                 instance_id: str, clock: Any, extra_routes: Iterable[web.RouteDef] = (),
                 request_timeout_s: float = REQUEST_TIMEOUT_S, upload_timeout_s: float = UPLOAD_TIMEOUT_S,
                 keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
                 max_concurrent_requests: int = MAX_CONCURRENT_REQUESTS,
                 json_max_bytes: int = JSON_MAX_BYTES) -> None:
        self.scheduler_ref = scheduler_ref
        self.webhooks = webhooks
        self.instance_id = instance_id
        self.clock = clock
        self.json_max_bytes = json_max_bytes
        self.keepalive_timeout_s = keepalive_timeout_s
        self._token_chars = len(token)
        guard = guard_middleware(max_concurrent=max_concurrent_requests, timeout_s=request_timeout_s,
                                 upload_timeout_s=upload_timeout_s)
        self.app = web.Application(middlewares=[guard, auth_middleware(token), size_middleware],
                                   client_max_size=APP_MAX_BYTES)
        routes = [
            web.get("/health", self.health),
            web.get("/batches", self.list_batches),
            web.get("/batches/{batch_id}", self.get_batch),
            web.post("/batches/{batch_id}/pause", self.pause),
            web.post("/batches/{batch_id}/resume", self.resume),
            # Both merge the given keys into the batch's settings; neither replaces the whole document.
            web.put("/batches/{batch_id}/settings", self.patch_settings),
            web.patch("/batches/{batch_id}/settings", self.patch_settings),
            web.get("/jobs/{job_id}", self.get_job),
            web.get("/accounts/{account_id}", self.get_account),
            web.put("/accounts/{account_id}/settings", self.patch_account_settings),
            web.patch("/accounts/{account_id}/settings", self.patch_account_settings),
            web.post("/accounts/{account_id}/topup", self.top_up),
            web.get("/accounts/{account_id}/do-not-call", self.list_dnc),
            web.post("/accounts/{account_id}/do-not-call", self.add_dnc),
            web.post("/webhooks/retell", self.webhook),
            *extra_routes,
            # last: any other path gets a JSON 404 through the middlewares, and the Expect check below
            web.route("*", "/{tail:.*}", self.no_route),
        ]
        self.app.add_routes([with_expect_check(r) for r in routes])
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

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
            await web.TCPSite(self._runner, host, port, backlog=128).start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1] if self._runner.addresses else port

    async def serve_forever(self) -> None:
        assert self._runner is not None, "start() first"
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._runner.cleanup()

    def _wake(self, reason: str) -> None:
        self.scheduler_ref.tell_nowait(Wake(reason))

    async def _json_object(self, request: web.Request) -> dict[str, Any]:
        body = await read_body(request, self.json_max_bytes)
        try:
            # integers past 64 bits get through to the route's own checks, which name the field
            value = parse_json(body, int64=False)
        except JsonBodyError as exc:
            raise _http_error(web.HTTPBadRequest, str(exc)) from None
        if not isinstance(value, dict):
            raise _http_error(web.HTTPBadRequest, "body must be a JSON object")
        return value

    @staticmethod
    def _path_id(request: web.Request, name: str) -> str:
        """A path segment usable as a database key (UTF-8, bounded), or 400 naming it."""
        value = request.match_info[name]
        try:
            value.encode()
        except UnicodeEncodeError:
            raise _http_error(web.HTTPBadRequest, f"{name} is not valid UTF-8 text") from None
        if len(value) > _MAX_ID_CHARS:
            raise _http_error(web.HTTPBadRequest, f"{name} is longer than {_MAX_ID_CHARS} characters")
        return value

    async def no_route(self, request: web.Request) -> web.Response:
        return _error(404, f"no route {request.method} {request.path[:100]!r}")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "instance": self.instance_id,
                                  "time": self.clock.now().isoformat()})

    # --- batches ----------------------------------------------------------------------------------

    async def list_batches(self, request: web.Request) -> web.Response:
        """A page of batches by id. The embedded server answers the ``_id`` string range with a scan
        (DESIGN.md section 6): fine for the batches collection, which holds hundreds, not millions."""
        limit, after = page_params(request)
        query = {"_id": {"$gt": after}} if after is not None else {}
        # Raw documents: a listing must not depend on every stored batch passing today's validation.
        rows = await Batch.get_pymongo_collection().find(
            query, {"account_id": 1, "status": 1, "name": 1, "call_settings.priority": 1}
        ).sort("_id", 1).limit(limit + 1).to_list()
        rows, next_cursor = _page(rows, limit, lambda r: r["_id"])
        counts = await page_counts([r["_id"] for r in rows])
        items = [{"id": r["_id"], "account_id": r.get("account_id"), "name": r.get("name", ""),
                  "status": r.get("status"), "priority": (r.get("call_settings") or {}).get("priority"),
                  "jobs": counts[r["_id"]]} for r in rows]
        return web.json_response({"items": items, "next_cursor": next_cursor})

    async def _batch(self, request: web.Request) -> Batch:
        batch_id = self._path_id(request, "batch_id")
        batch = await Batch.get(batch_id)
        if batch is None:
            raise _http_error(web.HTTPNotFound, f"no batch {batch_id!r}")
        return batch

    async def get_batch(self, request: web.Request) -> web.Response:
        batch = await self._batch(request)
        return web.json_response({
            "id": batch.id, "account_id": batch.account_id, "status": batch.status.value,
            "status_reason": batch.status_reason,
            "call_settings": batch.call_settings.model_dump(mode="json"), "jobs": await batch_counts(batch.id),
        })

    async def _set_status(self, request: web.Request, status: BatchStatus) -> web.Response:
        batch = await self._batch(request)
        if batch.status == BatchStatus.CANCELLED:
            return _error(409, f"batch {batch.id!r} is cancelled")
        await Batch.get_pymongo_collection().update_one(
            {"_id": batch.id}, {"$set": {"status": status.value, "status_reason": f"{status.value} by operator"}})
        self._wake(f"batch {batch.id} {status.value}")
        return web.json_response({"id": batch.id, "status": status.value})

    async def pause(self, request: web.Request) -> web.Response:
        return await self._set_status(request, BatchStatus.PAUSED)

    async def resume(self, request: web.Request) -> web.Response:
        return await self._set_status(request, BatchStatus.ACTIVE)

    async def patch_settings(self, request: web.Request) -> web.Response:
        """Merge the given keys into the batch's call settings (PUT and PATCH alike); the preset changes
        only when the body names ``preset``. Answers the resulting settings and what changed."""
        batch = await self._batch(request)
        patch = await self._json_object(request)
        before: CallSettings = batch.call_settings
        try:
            after = merge_call_settings(before, patch)
        except Exception as exc:  # whatever validation raised, it is the input's problem
            return web.json_response({"error": "invalid call_settings", "problems": _problems(exc)}, status=422,
                                     dumps=lambda o: json.dumps(o, default=str))
        changes = settings_changes(before, after)
        if changes:
            await Batch.get_pymongo_collection().update_one(
                {"_id": batch.id}, {"$set": {"call_settings": after.model_dump(mode="json")}})
            log.warning("settings_changed", batch_id=batch.id,
                        changes={k: {"before": b, "after": a} for k, (b, a) in changes.items()})
            if "preset" in changes:
                was, now = changes["preset"]
                log.warning("preset_changed", batch_id=batch.id, before=was, after=now)
            self._wake(f"batch {batch.id} settings changed")
        return web.json_response({"id": batch.id, "call_settings": after.model_dump(mode="json"),
                                  "changes": {k: {"before": b, "after": a} for k, (b, a) in changes.items()}})

    # --- jobs -------------------------------------------------------------------------------------

    async def get_job(self, request: web.Request) -> web.Response:
        job_id = self._path_id(request, "job_id")
        try:
            job = await Job.get(ObjectId(job_id))
        except InvalidId:
            return _error(400, f"not a job id: {job_id!r}")
        if job is None:
            return _error(404, f"no job {job_id!r}")
        return web.json_response(json.loads(job.model_dump_json()))

    # --- accounts ---------------------------------------------------------------------------------

    async def _account(self, request: web.Request) -> Account:
        account_id = self._path_id(request, "account_id")
        account = await Account.get(account_id)
        if account is None:
            raise _http_error(web.HTTPNotFound, f"no account {account_id!r}")
        return account

    async def get_account(self, request: web.Request) -> web.Response:
        account = await self._account(request)
        return web.json_response(account.model_dump(mode="json"))

    async def patch_account_settings(self, request: web.Request) -> web.Response:
        """Set ``max_concurrent_calls`` and/or ``daily_call_limit`` (null: no daily limit)."""
        account = await self._account(request)
        body = await self._json_object(request)
        if (refused := _unknown_keys(body, set(ACCOUNT_LIMITS))) is not None:
            return refused
        for name, value in body.items():
            low, high = ACCOUNT_LIMITS[name]
            nullable = name == "daily_call_limit"
            if value is None and nullable:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                allowed = f"a whole number from {low} to {high}" + (" or null (no limit)" if nullable else "")
                return _error(422, f"{name} must be {allowed}, got {_short(value)!r}", field=name)
        changes = {k: {"before": getattr(account, k), "after": v} for k, v in body.items()
                   if getattr(account, k) != v}
        if changes:
            await Account.get_pymongo_collection().update_one({"_id": account.id}, {"$set": body})
            log.warning("account_settings_changed", account_id=account.id, changes=changes)
            self._wake(f"account {account.id} settings changed")
        out = (await self._account(request)).model_dump(mode="json")
        return web.json_response({**out, "changes": changes})

    async def top_up(self, request: web.Request) -> web.Response:
        account = await self._account(request)
        body = await self._json_object(request)
        if (refused := _unknown_keys(body, set(MAX_TOPUP))) is not None:
            return refused
        cents, minutes = body.get("cents", 0), body.get("minutes", 0)
        for name, value in (("cents", cents), ("minutes", minutes)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TOPUP[name]:
                return _error(422, f"{name} must be a whole number from 0 to {MAX_TOPUP[name]}, got {_short(value)!r}")
        if cents == 0 and minutes == 0:
            return _error(422, f"nothing to top up: give cents or minutes above 0, got {_short(body)!r}")
        await top_up(account.id, cents=cents, ms=minutes * 60_000)
        self._wake(f"account {account.id} topped up")
        return web.json_response((await self._account(request)).model_dump(mode="json"))

    async def list_dnc(self, request: web.Request) -> web.Response:
        """A page of the account's do-not-call entries, sorted by key (index account_id, key; the string
        range is a scan on the embedded server, fine for lists of thousands)."""
        account = await self._account(request)
        limit, after = page_params(request)
        query: dict[str, Any] = {"account_id": account.id}
        if after is not None:
            query["key"] = {"$gt": after}
        entries = await DoNotCall.find(query).sort("+key").limit(limit + 1).to_list()
        entries, next_cursor = _page(entries, limit, lambda e: e.key)
        return web.json_response({
            "items": [{"key": e.key, "reason": e.reason, "added_at": e.added_at.isoformat()} for e in entries],
            "next_cursor": next_cursor})

    async def add_dnc(self, request: web.Request) -> web.Response:
        account = await self._account(request)
        body = await self._json_object(request)
        if (refused := _unknown_keys(body, {"key", "reason"})) is not None:
            return refused
        key, reason = body.get("key"), body.get("reason", "")
        if not isinstance(key, str) or not key.strip() or len(key) > 64:
            return _error(422, f"key must be a national id or an E.164 phone, got {_short(key)!r}")
        if not isinstance(reason, str) or len(reason) > 1000:
            return _error(422, f"reason must be text of at most 1000 characters, got {_short(reason)!r}")
        try:
            # Stored as the loader stores people, or the entry would never match a job.
            key = do_not_call_key(key)
        except ValueError as exc:
            return _error(422, str(exc))
        try:
            await DoNotCall(account_id=account.id, key=key, reason=reason, added_at=self.clock.now()).insert()
        except DuplicateKeyError:
            return web.json_response({"key": key, "status": "already listed"})
        return web.json_response({"key": key, "status": "added"}, status=201)

    async def webhook(self, request: web.Request) -> web.Response:
        return await self.webhooks.handle(request)
