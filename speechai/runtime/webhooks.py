"""Retell webhook intake, and the strict JSON reading every HTTP body of the runtime goes through.

A delivery is judged in this order, each step before the costlier next one:

1. ``Content-Length`` above ``WEBHOOK_MAX_BYTES`` → 413, nothing read;
2. ``x-retell-signature`` missing, malformed or stale → 401, nothing read;
3. the body, read with a cap (a chunked body past the limit → 413);
4. the HMAC over the raw body → 401;
5. strict JSON (no NaN/Infinity, integers within 64 bits, depth ≤ ``MAX_JSON_DEPTH``) → 400;
6. the shape: ``event`` a string, ``call`` an object with a short ``call_id``, ``call.metadata`` an
   object or absent, its ids strings → 400; an event this runtime does not handle → 200 "ignored"
   (Retell stops retrying; nothing is recorded);
7. an event already handled (``event:call_id`` recorded) → 200 "duplicate";
8. handled: routed to the actor holding the job, or its payload stored for the job's next actor;
9. only then the dedup key recorded. A handling failure answers 503 without recording it, so Retell's
   retry is handled again instead of being dropped as a duplicate of an event that was lost.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from typing import Any

from aiohttp import web
from pymongo.errors import BulkWriteError, PyMongoError

from actors.batcher import Batcher
from speechai.retell.signature import SIGNATURE_HEADER, header_is_fresh, parse_header, verify
from speechai.runtime.call_actor import CallEvent
from speechai.runtime.context import Runtime
from speechai.store.jobs import save_call_payload
from speechai.store.models import CallRecord, WebhookEvent

# Retell call payloads, transcripts included, are well under 1 MiB.
WEBHOOK_MAX_BYTES = 2 * 2**20
MAX_JSON_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
KNOWN_EVENTS = frozenset({"call_started", "call_ended", "call_analyzed"})
_CALL_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_METADATA_IDS = ("job_id", "attempt_id", "batch_id", "account_id")
_MAX_ID_CHARS = 128
_CHUNK = 64 * 1024


class JsonBodyError(ValueError):
    """A body that is not acceptable JSON; the message says what is wrong with it."""


def _unauthorized(message: str) -> web.HTTPException:
    return web.HTTPUnauthorized(text=json.dumps({"error": message}), content_type="application/json")


def _too_large(limit: int, size: int) -> web.HTTPException:
    message = f"body of at least {size} bytes is larger than the limit of {limit} bytes"
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size, text=json.dumps({"error": message}),
                                         content_type="application/json")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    chunks, size = [], 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, size)
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise JsonBodyError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonBodyError(f"number {text[:40]!r} is out of range")
    return value


def parse_json(body: bytes, *, int64: bool = True) -> Any:
    """``body`` as strict JSON, or JsonBodyError naming the problem.

    Refused: bytes that are not UTF-8, NaN/Infinity, floats that overflow, integers outside 64 bits
    (the database could not store them; ``int64=False`` leaves that to a caller that validates each
    field and names it), strings that are not valid Unicode (lone surrogate escapes), NUL in object
    keys, and nesting deeper than ``MAX_JSON_DEPTH``.
    """
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
        check_json_value(value, int64=int64)
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"body is not acceptable JSON: not UTF-8 ({exc})") from None
    except RecursionError:
        raise JsonBodyError(f"body is not acceptable JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # ours, json.JSONDecodeError, int() past the interpreter's digit limit
        raise JsonBodyError(f"body is not acceptable JSON: {str(exc)[:200]}") from None
    return value


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonBodyError(f"{where} is not valid Unicode (a lone surrogate escape)") from None


def check_json_value(value: Any, *, int64: bool = True) -> None:
    """Walk ``value`` (iteratively: no recursion to exhaust) and refuse what the database cannot keep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JsonBodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key, f"object key {key[:40]!r}")
                    if "\x00" in key:
                        raise JsonBodyError(f"object key {key[:40]!r} contains a NUL character")
                children = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, bool):
            continue
        elif int64 and isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            raise JsonBodyError(f"integer {str(item)[:40]}… is outside the 64-bit range "
                                f"{INT64_MIN}..{INT64_MAX}")
        elif isinstance(item, str):
            _check_text(item, f"string {item[:40]!r}")


def _shape(payload: Any) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """``(event, call, call_id, metadata)`` of a webhook body, or JsonBodyError naming the field."""
    if not isinstance(payload, dict):
        raise JsonBodyError("body must be a JSON object {event, call: {call_id, ...}}")
    event, call = payload.get("event"), payload.get("call")
    if not isinstance(event, str) or not 0 < len(event) <= 64:
        raise JsonBodyError(f"event must be a short string, got {str(event)[:80]!r}")
    if not isinstance(call, dict):
        raise JsonBodyError(f"call must be an object, got {type(call).__name__}")
    call_id = call.get("call_id")
    if not isinstance(call_id, str) or not _CALL_ID_RE.fullmatch(call_id):
        raise JsonBodyError(f"call.call_id must be 1 to 128 letters, digits or _.:-, got {str(call_id)[:80]!r}")
    metadata = call.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise JsonBodyError(f"call.metadata must be an object or absent, got {type(metadata).__name__}")
    for name in _METADATA_IDS:
        value = metadata.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > _MAX_ID_CHARS):
            raise JsonBodyError(f"call.metadata.{name} must be a string of at most {_MAX_ID_CHARS} "
                                f"characters, got {str(value)[:80]!r}")
    return event, call, call_id, metadata


class HandlingError(Exception):
    """The event could not be handled now; Retell should deliver it again."""


async def _insert_records(events: list[WebhookEvent]) -> list[bool]:
    """Insert every event record of the moment in one unordered bulk; per event, False when its key was
    already recorded (the unique index refused it)."""
    docs = [e.model_dump(by_alias=True, mode="python", exclude={"revision_id", "id"}) for e in events]
    try:
        await WebhookEvent.get_pymongo_collection().insert_many(docs, ordered=False)
        return [True] * len(docs)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(err.get("code") != DUPLICATE_KEY for err in errors):
            raise
        duplicate = {err["index"] for err in errors}
        return [i not in duplicate for i in range(len(docs))]


_records: Batcher[WebhookEvent, bool] = Batcher(_insert_records)
DUPLICATE_KEY = 11000
SEEN_KEYS = 100_000  # recent event keys remembered in memory (about 10 MB at most)


class WebhookReceiver:
    def __init__(self, rt: Runtime, api_key: str, *, max_bytes: int = WEBHOOK_MAX_BYTES) -> None:
        self.rt = rt
        self.api_key = api_key
        self.max_bytes = max_bytes
        self._seen: OrderedDict[str, None] = OrderedDict()

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        if len(self._seen) > SEEN_KEYS:
            self._seen.popitem(last=False)

    async def handle(self, request: web.Request) -> web.Response:
        """The HTTP side: size and signature header judged before the body is read, then ``receive``."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if request.content_length is not None and request.content_length > self.max_bytes:
            raise _too_large(self.max_bytes, request.content_length)
        if not header_is_fresh(signature, self.rt.now_ms()):
            raise _unauthorized(f"bad or stale {SIGNATURE_HEADER}")
        body = await read_body(request, self.max_bytes)
        status, answer = await self.receive(body, signature)
        return web.json_response(answer, status=status)

    async def receive(self, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        if not verify(body, self.api_key, signature, self.rt.now_ms()):
            return 401, {"error": f"bad or stale {SIGNATURE_HEADER}"}
        try:
            payload = parse_json(body)
            event, call, call_id, metadata = _shape(payload)
        except JsonBodyError as exc:
            return 400, {"error": str(exc)}
        if event not in KNOWN_EVENTS:
            self.rt.log.info("webhook_ignored", webhook_event=event[:64], call_id=call_id)
            return 200, {"status": "ignored", "reason": f"event {event!r} is not one this runtime handles"}
        self.rt.note_webhook()  # webhooks are arriving: live calls need polling only as a fallback
        signed = parse_header(signature)  # verified above: its timestamp is when the provider sent it
        lag_ms = max(0, self.rt.now_ms() - signed[0]) if signed is not None else None
        key = f"{event}:{call_id}"
        try:
            if key in self._seen:  # recent deliveries are known here; older ones by the unique index below
                return 200, {"status": "duplicate"}
            routed = await self._handle(event, call, call_id, metadata)
        except Exception as exc:  # any failure: not recorded, so Retell's retry is handled
            self.rt.log.warning("webhook_not_handled", webhook_event=event, call_id=call_id,
                                error=f"{type(exc).__name__}: {exc}"[:300])
            return 503, {"error": "event not handled now; deliver it again"}
        if routed:
            # The actor has it; its handling is idempotent, so a later copy needs only the memory below
            # (no database write on the hot path of a live call).
            self._remember(key)
            self.rt.log.info("webhook", webhook_event=event, call_id=call_id, routed=True, lag_ms=lag_ms)
            return 200, {"status": "ok"}
        try:
            # Nobody holds the job: the record is the dedup across restarts and instances (one write per
            # event, shared with the other events of the moment in one bulk insert).
            fresh = await _records.submit(WebhookEvent(key=key, event=event, call_id=call_id, payload=payload,
                                                       received_at=self.rt.clock.now()))
        except PyMongoError as exc:  # handled but not recorded: a retry is handled again
            self.rt.log.warning("webhook_not_recorded", webhook_event=event, call_id=call_id,
                                error=f"{type(exc).__name__}: {exc}"[:300])
            return 503, {"error": "event handled but not recorded; deliver it again"}
        self._remember(key)
        if not fresh:  # a delivery of the same event before this one (another instance, before a restart)
            return 200, {"status": "duplicate"}
        self.rt.log.info("webhook", webhook_event=event, call_id=call_id, routed=False, lag_ms=lag_ms)
        return 200, {"status": "ok"}

    async def _handle(self, event: str, call: dict[str, Any], call_id: str, metadata: dict[str, Any]) -> bool:
        """Route to the actor holding the job (True), or keep the payload for the job's next actor."""
        job_id = metadata.get("job_id") or ""
        actor = self.rt.actors.get(job_id)
        if actor is not None:
            if not actor.tell_nowait(CallEvent(event=event, call=call)):
                raise HandlingError(f"the actor of job {job_id} has no room for the event")
            return True
        attempt_id = metadata.get("attempt_id")
        if job_id and attempt_id and (
                event == "call_analyzed" or await CallRecord.find_one({"call_id": call_id}) is None):
            # Nobody holds the job right now: keep the payload (the next actor re-reads the call anyway),
            # but a late call_started/call_ended never replaces a fuller stored one.
            await save_call_payload(CallRecord(
                call_id=call_id, job_id=job_id, attempt_id=attempt_id,
                batch_id=metadata.get("batch_id") or "", account_id=metadata.get("account_id") or "",
                call_status=call.get("call_status") if isinstance(call.get("call_status"), str) else None,
                payload=call, updated_at=self.rt.clock.now()))
        return False
