"""The aiohttp control endpoint: health, batch pause/resume/settings, job inspection, Retell webhooks.

Every route but ``/health`` and the webhook (which carries its own HMAC signature) needs
``Authorization: Bearer <control token>``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import phonenumbers
from aiohttp import web
from bson import ObjectId
from bson.errors import InvalidId
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from speechai.domain.settings import CallSettings
from speechai.loader.normalize import parse_phone, parse_rut
from speechai.runtime.scheduler import Wake
from speechai.runtime.webhooks import WebhookReceiver
from speechai.store.accounts import top_up
from speechai.store.models import Account, Batch, BatchStatus, DoNotCall, Job, JobState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = {"/health", "/webhooks/retell"}
# Bounds that keep one top-up far inside the database's 64-bit integers (a typo, not a real order).
MAX_TOPUP = {"cents": 10**12, "minutes": 10**9}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _http_error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")


def auth_middleware(token: str) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _error(401, "missing or wrong bearer token")
        return await handler(request)

    return middleware


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


async def batch_counts(batch_id: str) -> dict[str, int]:
    rows = await Job.get_pymongo_collection().aggregate(
        [{"$match": {"batch_id": batch_id}}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
    )
    counts = {s.value: 0 for s in JobState}
    async for row in rows:
        counts[row["_id"]] = row["n"]
    return counts


class ControlApi:
    def __init__(self, *, token: str, scheduler_ref: Any, webhooks: WebhookReceiver,
                 instance_id: str, clock: Any, extra_routes: Iterable[web.RouteDef] = ()) -> None:
        self.scheduler_ref = scheduler_ref
        self.webhooks = webhooks
        self.instance_id = instance_id
        self.clock = clock
        self.app = web.Application(middlewares=[auth_middleware(token)], client_max_size=64 * 1024**2)
        self.app.add_routes([
            web.get("/health", self.health),
            web.get("/batches", self.list_batches),
            web.get("/batches/{batch_id}", self.get_batch),
            web.post("/batches/{batch_id}/pause", self.pause),
            web.post("/batches/{batch_id}/resume", self.resume),
            web.put("/batches/{batch_id}/settings", self.put_settings),
            web.get("/jobs/{job_id}", self.get_job),
            web.get("/accounts/{account_id}", self.get_account),
            web.post("/accounts/{account_id}/topup", self.top_up),
            web.get("/accounts/{account_id}/do-not-call", self.list_dnc),
            web.post("/accounts/{account_id}/do-not-call", self.add_dnc),
            web.post("/webhooks/retell", self.webhook),
            *extra_routes,
        ])
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind now, so a port in use fails start-up with a clear error instead of a restart loop."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
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

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "instance": self.instance_id,
                                  "time": self.clock.now().isoformat()})

    async def list_batches(self, request: web.Request) -> web.Response:
        out = []
        for b in await Batch.find_all().to_list():
            out.append({"id": b.id, "account_id": b.account_id, "status": b.status.value,
                        "priority": b.call_settings.priority, "jobs": await batch_counts(b.id)})
        return web.json_response(out)

    async def _batch(self, request: web.Request) -> Batch:
        batch = await Batch.get(request.match_info["batch_id"])
        if batch is None:
            raise _http_error(web.HTTPNotFound, f"no batch {request.match_info['batch_id']!r}")
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

    async def put_settings(self, request: web.Request) -> web.Response:
        batch = await self._batch(request)
        try:
            settings = CallSettings.model_validate(await self._json_object(request))
        except ValidationError as exc:
            problems = [{"field": ".".join(map(str, e["loc"])), "value": e.get("input"), "error": e["msg"]}
                        for e in exc.errors()]
            return web.json_response({"error": "invalid call_settings", "problems": problems}, status=422,
                                     dumps=lambda o: json.dumps(o, default=str))
        await Batch.get_pymongo_collection().update_one(
            {"_id": batch.id}, {"$set": {"call_settings": settings.model_dump(mode="json")}})
        self._wake(f"batch {batch.id} settings changed")
        return web.json_response({"id": batch.id, "call_settings": settings.model_dump(mode="json")})

    async def get_job(self, request: web.Request) -> web.Response:
        try:
            job = await Job.get(ObjectId(request.match_info["job_id"]))
        except InvalidId:
            return _error(400, f"not a job id: {request.match_info['job_id']!r}")
        if job is None:
            return _error(404, f"no job {request.match_info['job_id']!r}")
        return web.json_response(json.loads(job.model_dump_json()))

    async def _account(self, request: web.Request) -> Account:
        account = await Account.get(request.match_info["account_id"])
        if account is None:
            raise _http_error(web.HTTPNotFound, f"no account {request.match_info['account_id']!r}")
        return account

    async def _json_object(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as exc:  # malformed JSON, or bytes that are not UTF-8
            raise _http_error(web.HTTPBadRequest, f"body is not UTF-8 JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _http_error(web.HTTPBadRequest, "body must be a JSON object")
        return body

    async def get_account(self, request: web.Request) -> web.Response:
        account = await self._account(request)
        return web.json_response(account.model_dump(mode="json"))

    async def top_up(self, request: web.Request) -> web.Response:
        account = await self._account(request)
        body = await self._json_object(request)
        if (refused := _unknown_keys(body, set(MAX_TOPUP))) is not None:
            return refused
        cents, minutes = body.get("cents", 0), body.get("minutes", 0)
        for name, value in (("cents", cents), ("minutes", minutes)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TOPUP[name]:
                return _error(422, f"{name} must be a whole number from 0 to {MAX_TOPUP[name]}, got {value!r}")
        if cents == 0 and minutes == 0:
            return _error(422, f"nothing to top up: give cents or minutes above 0, got {body!r}")
        await top_up(account.id, cents=cents, ms=minutes * 60_000)
        self._wake(f"account {account.id} topped up")
        return web.json_response((await self._account(request)).model_dump(mode="json"))

    async def list_dnc(self, request: web.Request) -> web.Response:
        account = await self._account(request)
        entries = await DoNotCall.find({"account_id": account.id}).to_list()
        return web.json_response([{"key": e.key, "reason": e.reason, "added_at": e.added_at.isoformat()}
                                  for e in entries])

    async def add_dnc(self, request: web.Request) -> web.Response:
        account = await self._account(request)
        body = await self._json_object(request)
        if (refused := _unknown_keys(body, {"key", "reason"})) is not None:
            return refused
        key, reason = body.get("key"), body.get("reason", "")
        if not isinstance(key, str) or not key.strip():
            return _error(422, f"key must be a national id or an E.164 phone, got {key!r}")
        if not isinstance(reason, str):
            return _error(422, f"reason must be text, got {reason!r}")
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
        status, body = await self.webhooks.receive(await request.read(),
                                                   request.headers.get("x-retell-signature"))
        return web.json_response(body, status=status)
