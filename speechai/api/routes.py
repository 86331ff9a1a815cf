"""The handlers of control API v1 and their :class:`~speechai.api.openapi.Op` declarations.

Job changes are whole-document replaces conditional on ``version`` (``{_id, version: v}`` → v+1, with
``sync_ms`` and ``next_try_ms`` refreshed), so the scheduler's due index resync and the call actors'
version fence see them; after any change that affects dialing the scheduler is woken.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog
from aiohttp import web
from bson import ObjectId
from bson.errors import InvalidId
from pydantic import BaseModel, ValidationError
from pymongo.errors import DuplicateKeyError

from speechai.api import schemas as s
from speechai.api.audit import note
from speechai.api.auth import (
    account_scope,
    create_key,
    ensure_account,
    principal,
    public,
    register_account_resolver,
    requires,
    revoke_key,
)
from speechai.api.batch_counts import forget_counts, page_counts
from speechai.api.openapi import Op
from speechai.api.problems import ApiError, invalid
from speechai.dialing.limits import account_update
from speechai.domain.settings import CallSettings, merge_call_settings, settings_changes
from speechai.loader.errors import LimitError, LoadError, MissingColumnsError, UnreadableFileError
from speechai.loader.normalize import parse_phone, parse_rut
from speechai.loader.service import load_batch
from speechai.loader.spec import BatchSource
from speechai.runtime.scheduler import Wake
from speechai.runtime.webhooks import JsonBodyError, WebhookReceiver, parse_json, read_body
from speechai.store.accounts import top_up
from speechai.store.api_models import ApiKey, AuditEntry, Role
from speechai.store.models import (
    Account,
    Attempt,
    Batch,
    BatchStatus,
    DoNotCall,
    Job,
    JobState,
    Transition,
    epoch_ms,
    wall_ms,
)
from speechai.store.point_reads import PointReads

log = structlog.get_logger("speechai.control")
M = TypeVar("M", bound=BaseModel)
OPERATOR = Role.OPERATOR
VIEWER = Role.VIEWER
BILLING = Role.BILLING
RETRYABLE = (JobState.FAILED, JobState.EXCLUDED, JobState.CANCELLED)
# How often deferred cancellations (jobs that were in flight) are applied.
DEFERRED_CANCEL_EVERY_S = 2.0


# --- parsing --------------------------------------------------------------------------------------------


def encode_cursor(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> str:
    """The key a page ended on; ValueError when ``cursor`` is not one this endpoint returned."""
    try:
        raw = cursor.encode("ascii")
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True).decode()
    except (UnicodeError, binascii.Error):
        raise ValueError(f"cursor {cursor[:80]!r} is not one this endpoint returned") from None


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string as ``model`` (unknown or repeated parameters refused by name), or 422."""
    query = request.query
    allowed = set(model.model_fields)
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ApiError(422, f"unknown query parameter(s) {', '.join(repr(k[:40]) for k in unknown)}; "
                            f"allowed: {', '.join(sorted(allowed))}")
    for name in allowed:
        if len(query.getall(name, [])) > 1:
            raise ApiError(422, f"{name} given more than once")
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise invalid(exc) from None


def cursor_key(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def path_id(request: web.Request, name: str) -> str:
    """A path segment usable as a database key (UTF-8, bounded), or 400 naming it."""
    value = request.match_info[name]
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ApiError(400, f"{name} is not valid UTF-8 text") from None
    if len(value) > s.MAX_ID_CHARS:
        raise ApiError(400, f"{name} is longer than {s.MAX_ID_CHARS} characters")
    return value


def page(rows: list[Any], limit: int, key: Callable[[Any], str]) -> tuple[list[Any], str | None]:
    """The first ``limit`` of ``limit + 1`` rows read, and the cursor to the rest (None: no more)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(key(rows[-1]))


def answer(model: type[BaseModel], data: Any, status: int = 200) -> web.Response:
    """``data`` shaped by ``model`` (the schema the document promises), as JSON."""
    body = model.model_validate(data).model_dump(mode="json")
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


D = TypeVar("D", Batch, Job)

# fresh reads, the requests of a moment sharing one query (the embedded server runs one at a time)
_batch_reads: PointReads[Batch] = PointReads(Batch)
_job_reads: PointReads[Job] = PointReads(Job)


def _visible(request: web.Request, doc: D | None, missing: str) -> D:
    """The document, if it exists and the request's key may see its account; else the same 404."""
    if doc is None:
        raise ApiError(404, missing)
    ensure_account(request, doc.account_id, missing)
    return doc


def job_document(job: Job) -> dict[str, Any]:
    doc = job.model_dump(by_alias=True, mode="python", exclude={"revision_id"})
    doc["next_try_ms"] = epoch_ms(job.next_try_at)
    doc["sync_ms"] = wall_ms()
    doc["version"] = job.version + 1
    return doc


async def replace_job(job: Job) -> bool:
    """Write ``job`` whole if nobody changed it since it was read (version fence)."""
    result = await Job.get_pymongo_collection().replace_one({"_id": job.id, "version": job.version},
                                                            job_document(job))
    return result.matched_count == 1


def _job_cursor(position: int, row: dict[str, Any]) -> str:
    return encode_cursor(f"{position}:{row['_id']}")


# With a filter checked in Python (``outcome``: the last attempt's), one page reads at most this many
# candidate rows; past it the page is short, and its cursor continues after the last row read.
JOB_SCAN_MAX = 5000
JOB_SCAN_CHUNK = 500


def _job_anchor(after: str | None, cursor: str) -> tuple[int, ObjectId | None]:
    if after is None:
        return 0, None
    text_pos, _, text_id = after.partition(":")
    try:
        position, anchor = int(text_pos), ObjectId(text_id)
    except (InvalidId, TypeError, ValueError):
        raise ApiError(422, f"cursor {cursor[:80]!r} is not one this endpoint returned") from None
    if not 0 < position < 10**12:
        raise ApiError(422, f"cursor {cursor[:80]!r} is not one this endpoint returned")
    return position, anchor


async def _rows_after(query: dict[str, Any], fields: dict[str, int], n: int, position: int,
                      anchor: ObjectId | None) -> tuple[list[dict[str, Any]], int]:
    """Up to ``n`` jobs of ``query`` in ``_id`` order after ``anchor``, and the anchor's position (the
    rows read are at positions position+1, position+2 ...).

    The embedded server answers an ``_id`` range with a scan of the whole collection, but the equality
    filters, sorted by ``_id`` with a skip, from their index (DESIGN.md section 6). So the rows are read
    by position and kept only when the row at the anchor's position is still the anchor: the rows after
    it are then exactly those with a greater ``_id``, each once. When inserts or deletes moved the anchor,
    they are read by the ``_id`` range instead (same rows, slower)."""
    coll = Job.get_pymongo_collection()
    if anchor is None:
        return await coll.find(query, fields).sort("_id", 1).limit(n).to_list(), 0
    found = await coll.find(query, fields).sort("_id", 1).skip(position - 1).limit(n + 1).to_list()
    if found and found[0]["_id"] == anchor:
        return found[1:], position
    rows = await coll.find({**query, "_id": {"$gt": anchor}}, fields).sort("_id", 1).limit(n).to_list()
    return rows, (0 if not rows else await _position(query, anchor))


async def _job_page(query: dict[str, Any], fields: dict[str, int], limit: int, after: str | None,
                    cursor: str, keep: Callable[[dict[str, Any]], bool] | None = None
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """A page of jobs in ``_id`` order after the cursor's anchor (position, last id).

    ``keep``: a check the query cannot express, applied to the rows it selects. The cursor then names
    the last row *read* (kept or not), so the next page starts right after it: each matching job is
    shown once, and one request reads at most ``JOB_SCAN_MAX`` rows (a short or empty page with a
    ``next_cursor`` means: more may follow)."""
    position, anchor = _job_anchor(after, cursor)
    if keep is None:
        rows, position = await _rows_after(query, fields, limit + 1, position, anchor)
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, _job_cursor(position + limit, rows[-1])
    kept: list[tuple[int, dict[str, Any]]] = []
    scanned = 0
    while True:
        chunk = min(JOB_SCAN_CHUNK, JOB_SCAN_MAX - scanned)
        rows, position = await _rows_after(query, fields, chunk, position, anchor)
        for i, row in enumerate(rows, 1):
            if keep(row):
                kept.append((position + i, row))
                if len(kept) > limit:  # one more than the page: there is a next page
                    last_pos, last = kept[limit - 1]
                    return [r for _, r in kept[:limit]], _job_cursor(last_pos, last)
        scanned += len(rows)
        if len(rows) < chunk:  # nothing more to read
            return [r for _, r in kept], None
        position, anchor = position + len(rows), rows[-1]["_id"]
        if scanned >= JOB_SCAN_MAX:
            return [r for _, r in kept], _job_cursor(position, rows[-1])


async def _position(query: dict[str, Any], anchor: ObjectId) -> int:
    """How many jobs of ``query`` sort at or before ``anchor`` (a ``$match`` + ``$count`` aggregate)."""
    rows = await Job.get_pymongo_collection().aggregate(
        [{"$match": {**query, "_id": {"$lte": anchor}}}, {"$count": "n"}])
    got = await rows.to_list()
    return int(got[0]["n"]) if got else 0


def _last_outcome(row: dict[str, Any]) -> str | None:
    attempts = row.get("attempts") or []
    last = attempts[-1] if attempts else None
    return last.get("outcome") if isinstance(last, dict) else None


def job_summary(job: Job) -> dict[str, Any]:
    return {"state": job.state.value, "version": job.version, "next_try_ms": job.next_try_ms,
            "last_reason": job.last_reason}


class Routes:
    def __init__(self, *, scheduler_ref: Any, webhooks: WebhookReceiver, instance_id: str, clock: Any,
                 json_max_bytes: int) -> None:
        self.scheduler_ref = scheduler_ref
        self.webhooks = webhooks
        self.instance_id = instance_id
        self.clock = clock
        self.json_max_bytes = json_max_bytes

    def _wake(self, reason: str) -> None:
        forget_counts()
        self.scheduler_ref.tell_nowait(Wake(reason))

    async def _json(self, request: web.Request) -> Any:
        body = await read_body(request, self.json_max_bytes)
        try:
            # integers past 64 bits get through to the models' bounds, which name the field
            return parse_json(body, int64=False)
        except JsonBodyError as exc:
            raise ApiError(400, str(exc)) from None

    async def _json_object(self, request: web.Request) -> dict[str, Any]:
        value = await self._json(request)
        if not isinstance(value, dict):
            raise ApiError(400, "body must be a JSON object")
        return value

    async def _body(self, request: web.Request, model: type[M]) -> M:
        value = await self._json_object(request)
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise invalid(exc) from None

    def operations(self) -> list[Op]:
        r = self
        return [
            Op("GET", "/health", r.health, "Liveness of this instance", "service", ok=s.Health),
            Op("GET", "/batches", r.list_batches, "Page of batches", "batches", ok=s.BatchPage, query=s.BatchQuery),
            Op("POST", "/batches", r.create_batch, "Create a batch from JSON rows", "batches", ok=s.LoadOut,
               ok_status=201, body=s.BatchCreateRequest, errors=(409,)),
            Op("GET", "/batches/{batch_id}", r.get_batch, "One batch with its job counts", "batches",
               ok=s.BatchOut),
            Op("POST", "/batches/{batch_id}/pause", r.pause, "Pause dialing", "batches", ok=s.BatchStatusOut,
               errors=(409,)),
            Op("POST", "/batches/{batch_id}/resume", r.resume, "Resume dialing", "batches", ok=s.BatchStatusOut,
               errors=(409,)),
            Op("POST", "/batches/{batch_id}/cancel", r.cancel_batch, "Cancel: no new dials, live calls finish",
               "batches", ok=s.BatchStatusOut, errors=(409,)),
            Op("PUT", "/batches/{batch_id}/settings", r.patch_settings, "Merge call settings", "batches",
               ok=s.BatchSettingsOut, partial_body=CallSettings),
            Op("PATCH", "/batches/{batch_id}/settings", r.patch_settings, "Merge call settings", "batches",
               ok=s.BatchSettingsOut, partial_body=CallSettings),
            Op("GET", "/jobs", r.list_jobs, "Page of jobs, filtered", "jobs", ok=s.JobPage, query=s.JobQuery),
            Op("GET", "/jobs/{job_id}", r.get_job, "One job", "jobs", ok=s.JobOut),
            Op("GET", "/jobs/{job_id}/attempts", r.list_attempts, "Page of a job's attempts", "jobs",
               ok=s.AttemptPage, query=s.PageQuery),
            Op("POST", "/jobs/{job_id}/retry", r.retry_job, "Send a failed or excluded job back to pending",
               "jobs", ok=s.JobActionOut, body=s.RetryRequest, errors=(409,)),
            Op("POST", "/jobs/{job_id}/cancel", r.cancel_job, "Cancel a job (in flight: after the live call)",
               "jobs", ok=s.JobActionOut, body=s.CancelRequest, errors=(409,),
               more={202: ("In flight: cancelled once the live call ends", s.JobActionOut)}),
            Op("GET", "/accounts", r.list_accounts, "Page of accounts", "accounts", ok=s.AccountPage,
               query=s.PageQuery),
            Op("POST", "/accounts", r.create_account, "Create an account", "accounts", ok=s.AccountOut,
               ok_status=201, body=s.AccountCreateRequest, errors=(409,)),
            Op("GET", "/accounts/{account_id}", r.get_account, "An account and its balances", "accounts",
               ok=s.AccountOut),
            Op("PUT", "/accounts/{account_id}/settings", r.patch_account_settings, "Set account limits",
               "accounts", ok=s.AccountSettingsOut, body=s.AccountSettingsRequest),
            Op("PATCH", "/accounts/{account_id}/settings", r.patch_account_settings, "Set account limits",
               "accounts", ok=s.AccountSettingsOut, body=s.AccountSettingsRequest),
            Op("POST", "/accounts/{account_id}/topup", r.top_up, "Add credit or minutes", "accounts",
               ok=s.AccountOut, body=s.TopUpRequest),
            Op("GET", "/accounts/{account_id}/do-not-call", r.list_dnc, "Page of do-not-call entries", "accounts",
               ok=s.DoNotCallPage, query=s.PageQuery),
            Op("POST", "/accounts/{account_id}/do-not-call", r.add_dnc, "Add a do-not-call entry", "accounts",
               ok=s.DoNotCallOut, ok_status=201, body=s.DoNotCallRequest,
               more={200: ("Already listed", s.DoNotCallOut)}),
            Op("GET", "/keys", r.list_keys, "Page of API keys (never their secrets)", "keys", ok=s.KeyPage,
               query=s.AccountPageQuery),
            Op("POST", "/keys", r.create_key, "Create an API key (its token is shown once)", "keys",
               ok=s.KeyCreated, ok_status=201, body=s.KeyCreateRequest),
            Op("DELETE", "/keys/{key_id}", r.revoke_key, "Revoke an API key at once", "keys", ok=s.KeyOut),
            Op("GET", "/audit", r.list_audit, "Page of the audit log", "audit", ok=s.AuditPage,
               query=s.AccountPageQuery),
            Op("POST", "/webhooks/retell", r.webhook, "Retell webhook (HMAC-signed)", "service",
               body={"type": "object"}, errors=(401,), more={200: ("Accepted", s.WebhookAck)}),
        ]

    @public
    async def health(self, request: web.Request) -> web.Response:
        """Open: no key needed."""
        return answer(s.Health, {"status": "ok", "instance": self.instance_id, "time": self.clock.now()})

    @public
    async def webhook(self, request: web.Request) -> web.Response:
        """Open: the body carries its own HMAC signature (x-retell-signature)."""
        return await self.webhooks.handle(request)

    # --- batches --------------------------------------------------------------------------------------

    @requires(OPERATOR, VIEWER, account_from="query:account_id")
    async def list_batches(self, request: web.Request) -> web.Response:
        """Batches by id. The ``_id`` range is a scan on the embedded server (DESIGN.md section 6): fine
        for batches, which number hundreds, not millions."""
        q = parse_query(request, s.BatchQuery)
        after = cursor_key(q.cursor)
        query: dict[str, Any] = {}
        if (scope := q.account_id or account_scope(request)) is not None:
            query["account_id"] = scope
        if q.status is not None:
            query["status"] = q.status.value
        if after is not None:
            query["_id"] = {"$gt": after}
        # Raw documents: a listing must not depend on every stored batch passing today's validation.
        rows = await Batch.get_pymongo_collection().find(
            query, {"account_id": 1, "status": 1, "name": 1, "call_settings.priority": 1}
        ).sort("_id", 1).limit(q.limit + 1).to_list()
        rows, next_cursor = page(rows, q.limit, lambda row: row["_id"])
        counts = await page_counts([row["_id"] for row in rows])
        items = [{"id": row["_id"], "account_id": row.get("account_id"), "name": row.get("name", ""),
                  "status": row.get("status"), "priority": (row.get("call_settings") or {}).get("priority"),
                  "jobs": counts[row["_id"]]} for row in rows]
        return answer(s.BatchPage, {"items": items, "next_cursor": next_cursor})

    async def _batch(self, request: web.Request) -> Batch:
        batch_id = path_id(request, "batch_id")
        return _visible(request, await _batch_reads.get(batch_id), f"no batch {batch_id!r}")

    @requires(OPERATOR, VIEWER, account_from="handler")
    async def get_batch(self, request: web.Request) -> web.Response:
        batch = await self._batch(request)
        return answer(s.BatchOut, {
            "id": batch.id, "account_id": batch.account_id, "name": batch.name, "status": batch.status,
            "status_reason": batch.status_reason, "call_settings": batch.call_settings,
            "jobs": (await page_counts([batch.id]))[batch.id]})

    async def _set_status(self, request: web.Request, status: BatchStatus) -> web.Response:
        batch = await self._batch(request)
        if batch.status == BatchStatus.CANCELLED:
            raise ApiError(409, f"batch {batch.id!r} is cancelled")
        if batch.status == BatchStatus.LOADING:
            raise ApiError(409, f"batch {batch.id!r} is still loading")
        # who did it, at a glance (the audit log has the rest)
        reason = f"{status.value} by operator (key {principal(request).key_id})"
        await Batch.get_pymongo_collection().update_one(
            {"_id": batch.id}, {"$set": {"status": status.value, "status_reason": reason}})
        note(request, f"batch.{ {'paused': 'pause', 'active': 'resume', 'cancelled': 'cancel'}[status.value]}",
             batch.account_id, batch.id, before={"status": batch.status.value}, after={"status": status.value})
        self._wake(f"batch {batch.id} {status.value}")
        return answer(s.BatchStatusOut, {"id": batch.id, "status": status})

    @requires(OPERATOR, account_from="handler")
    async def pause(self, request: web.Request) -> web.Response:
        return await self._set_status(request, BatchStatus.PAUSED)

    @requires(OPERATOR, account_from="handler")
    async def resume(self, request: web.Request) -> web.Response:
        return await self._set_status(request, BatchStatus.ACTIVE)

    @requires(OPERATOR, account_from="handler")
    async def cancel_batch(self, request: web.Request) -> web.Response:
        """No new dials from now (the scheduler loads only active batches and a call actor re-reads its
        batch before dialing); calls already live finish and are recorded. Jobs keep their state; the
        batch cannot be resumed."""
        return await self._set_status(request, BatchStatus.CANCELLED)

    @requires(OPERATOR, account_from="handler")
    async def patch_settings(self, request: web.Request) -> web.Response:
        """Merge the given keys into the batch's call settings (PUT and PATCH alike); the preset changes
        only when the body names ``preset``. Answers the resulting settings and what changed."""
        batch = await self._batch(request)
        patch = await self._json_object(request)
        before: CallSettings = batch.call_settings
        try:
            after = merge_call_settings(before, patch)
        except Exception as exc:  # whatever validation raised, it is the input's problem
            raise invalid(exc, "invalid call_settings") from None
        changes = settings_changes(before, after)
        shown = {k: {"before": b, "after": a} for k, (b, a) in changes.items()}
        if changes:
            await Batch.get_pymongo_collection().update_one(
                {"_id": batch.id}, {"$set": {"call_settings": after.model_dump(mode="json")}})
            log.warning("settings_changed", batch_id=batch.id, changes=shown)
            if "preset" in changes:
                was, now = changes["preset"]
                log.warning("preset_changed", batch_id=batch.id, before=was, after=now)
            self._wake(f"batch {batch.id} settings changed")
        note(request, "batch.settings", batch.account_id, batch.id,
             before={k: b for k, (b, _) in changes.items()}, after={k: a for k, (_, a) in changes.items()})
        return answer(s.BatchSettingsOut, {"id": batch.id, "call_settings": after, "changes": shown})

    @requires(OPERATOR, account_from="handler", body_account="account_id")
    async def create_batch(self, request: web.Request) -> web.Response:
        """Rows as JSON objects (column header → cell), loaded by the spreadsheet loader: the same column
        matching, normalization, validation and summary as an upload. A batch id already used by another
        account is 409."""
        body = await self._body(request, s.BatchCreateRequest)
        ensure_account(request, body.account_id, f"no account {body.account_id!r}")
        existing = await Batch.get_pymongo_collection().find_one({"_id": body.batch_id}, {"account_id": 1})
        if existing is not None and existing.get("account_id") != body.account_id:
            raise ApiError(409, f"batch id {body.batch_id!r} is taken; choose another")
        with tempfile.TemporaryDirectory(prefix="speechai-rows-") as tmp:
            path = Path(tmp) / "rows.csv"
            await anyio.to_thread.run_sync(_write_csv, path, body.rows)
            try:
                source = BatchSource(file=path, account=body.account_id, batch_id=body.batch_id, name=body.name,
                                     format=body.format, agent_id=body.agent_id, from_number=body.from_number,
                                     call_settings=body.call_settings, accept_partial=body.accept_partial,
                                     segments=body.segments)
            except ValidationError as exc:
                raise invalid(exc, "invalid batch") from None
            try:
                summary = await load_batch(source, now=self.clock.now(), report_dir=Path(tmp) / "reports")
            except MissingColumnsError as exc:
                raise ApiError(422, str(exc), missing=exc.missing, found=exc.found) from None
            except LimitError as exc:
                raise ApiError(413, str(exc)) from None
            except (UnreadableFileError, LoadError) as exc:
                raise ApiError(422, str(exc)) from None
        out = summary.to_dict()
        out["report_path"] = None  # the report lived in a temporary directory
        if not summary.ok:
            out.pop("error", None)
            raise ApiError(422, f"{out['rejected_rows']} row(s) rejected; nothing was loaded", **out)
        note(request, "batch.create", body.account_id, body.batch_id,
             after={"rows": summary.rows, "jobs_created": summary.jobs_created})
        self._wake(f"batch {body.batch_id} created")
        return answer(s.LoadOut, out, status=201)

    # --- jobs -----------------------------------------------------------------------------------------

    async def _job(self, request: web.Request) -> Job:
        job_id = path_id(request, "job_id")
        try:
            oid = ObjectId(job_id)
        except (InvalidId, TypeError):
            raise ApiError(400, f"not a job id: {job_id!r}") from None
        return _visible(request, await _job_reads.get(oid), f"no job {job_id!r}")

    @requires(OPERATOR, VIEWER, account_from="query:account_id")
    async def list_jobs(self, request: web.Request) -> web.Response:
        """Jobs in ``_id`` order. Equality filters use the indexes (``batch_id`` with ``state``, ``person_key``
        for ``rut``; ``updated_from_ms``/``updated_to_ms`` the integer ``sync_ms`` index); ``phone`` is
        checked on the rows those select. ``outcome`` is the last attempt's: the query selects jobs with
        an attempt of that outcome, and the last one is checked here (``_job_page``'s ``keep``).

        ``attempts`` is projected whole: the embedded server answers a dotted projection into an array
        (``attempts.outcome``) with no ``attempts`` at all, and has no ``$slice`` projection."""
        q = parse_query(request, s.JobQuery)
        after = cursor_key(q.cursor)
        query: dict[str, Any] = {}
        if (scope := q.account_id or account_scope(request)) is not None:
            query["account_id"] = scope
        if q.batch_id is not None:
            batch = await Batch.get_pymongo_collection().find_one({"_id": q.batch_id}, {"account_id": 1})
            missing = f"no batch {q.batch_id!r}"
            if batch is None or (scope is not None and batch.get("account_id") != scope):
                raise ApiError(404, missing)
            ensure_account(request, batch.get("account_id"), missing)
            # the batch's jobs are all of its account: the account filter would only keep the planner
            # from the (batch_id, state) index
            query.pop("account_id", None)
            query["batch_id"] = q.batch_id
        if q.state is not None:
            query["state"] = q.state.value
        if q.rut is not None:
            try:
                query["person_key"] = parse_rut(q.rut)
            except ValueError as exc:
                raise ApiError(422, f"rut: {exc}", problems=[{"field": "rut", "value": q.rut, "error": str(exc)}]) \
                    from None
        if q.phone is not None:
            try:
                query["phones.number"] = parse_phone(q.phone, "CL").number
            except ValueError as exc:
                raise ApiError(422, f"phone: {exc}",
                               problems=[{"field": "phone", "value": q.phone, "error": str(exc)}]) from None
        keep: Callable[[dict[str, Any]], bool] | None = None
        if q.outcome is not None:
            query["attempts.outcome"] = q.outcome  # any attempt: narrows the rows read to the candidates
            wanted = q.outcome

            def last_is_wanted(row: dict[str, Any]) -> bool:
                return _last_outcome(row) == wanted

            keep = last_is_wanted
        window: dict[str, int] = {}
        if q.updated_from_ms is not None:
            window["$gte"] = q.updated_from_ms
        if q.updated_to_ms is not None:
            window["$lte"] = q.updated_to_ms
        if window:
            query["sync_ms"] = window
        fields = {"account_id": 1, "batch_id": 1, "person_key": 1, "name": 1, "state": 1, "version": 1,
                  "next_try_ms": 1, "sync_ms": 1, "attempts": 1, "last_reason": 1}
        rows, next_cursor = await _job_page(query, fields, q.limit, after, q.cursor or "", keep)
        items = [{"id": str(row["_id"]), "account_id": row["account_id"], "batch_id": row["batch_id"],
                  "person_key": row.get("person_key", ""), "name": row.get("name", ""), "state": row["state"],
                  "version": row.get("version", 0), "next_try_ms": row.get("next_try_ms", 0),
                  "sync_ms": row.get("sync_ms", 0), "attempts": len(row.get("attempts") or []),
                  "outcome": _last_outcome(row),
                  "last_reason": row.get("last_reason")} for row in rows]
        return answer(s.JobPage, {"items": items, "next_cursor": next_cursor})

    @requires(OPERATOR, VIEWER, account_from="handler")
    async def get_job(self, request: web.Request) -> web.Response:
        job = await self._job(request)
        return answer(s.JobOut, json.loads(job.model_dump_json()))

    @requires(OPERATOR, VIEWER, account_from="handler")
    async def list_attempts(self, request: web.Request) -> web.Response:
        """A job's attempts, oldest first; the cursor is the position of the last one shown."""
        job = await self._job(request)
        q = parse_query(request, s.PageQuery)
        after = cursor_key(q.cursor)
        start = 0
        if after is not None:
            if not after.isdigit() or len(after) > 9:
                raise ApiError(422, f"cursor {q.cursor[:80]!r} is not one this endpoint returned")
            start = int(after) + 1
        chosen: list[Attempt] = job.attempts[start:start + q.limit + 1]
        indexed = list(enumerate(chosen, start))
        indexed, next_cursor = page(indexed, q.limit, lambda pair: str(pair[0]))
        return answer(s.AttemptPage, {"items": [json.loads(a.model_dump_json()) for _, a in indexed],
                                      "next_cursor": next_cursor})

    async def _change_job(self, request: web.Request, change: Callable[[Job], None]) -> Job:
        """Read, change, replace conditional on version; 409 when the job moved on meanwhile."""
        job = await self._job(request)
        change(job)
        if not await replace_job(job):
            raise ApiError(409, f"job {job.id} changed while this request ran (version {job.version}); "
                                "read it again and retry")
        job.version += 1
        return job

    @requires(OPERATOR, account_from="handler")
    async def retry_job(self, request: web.Request) -> web.Response:
        """A failed, excluded or cancelled job back to pending, due now. A done job (it succeeded) only
        with ``force`` (audited as forced). In flight, waiting or suspended: 409."""
        body = await self._body(request, s.RetryRequest)
        who = principal(request)
        before: dict[str, Any] = {}
        job = await self._job(request)
        # a job of a batch that will never dial again would wait as pending for ever
        batch = await Batch.get_pymongo_collection().find_one({"_id": job.batch_id}, {"status": 1})
        if batch is None or batch.get("status") == BatchStatus.CANCELLED.value:
            state = "gone" if batch is None else "cancelled"
            raise ApiError(409, f"job {job.id}: its batch {job.batch_id!r} is {state}; it would never be dialed")

        def change(job: Job) -> None:
            before.update(job_summary(job))
            if job.state == JobState.DONE and not body.force:
                raise ApiError(409, f"job {job.id} is done (it succeeded); send force=true to dial it again")
            if job.state not in (*RETRYABLE, JobState.DONE):
                raise ApiError(409, f"job {job.id} is {job.state.value}; only a failed, excluded or cancelled "
                                    "job can be retried")
            now = self.clock.now()
            reason = f"retry by {who.key_id}{' (forced)' if body.force else ''}: {body.reason}"
            job.history.append(Transition(at=now, from_state=job.state, to_state=JobState.PENDING, reason=reason))
            job.state, job.last_reason, job.updated_at = JobState.PENDING, reason, now
            job.next_try_at, job.lease = now, None

        job = await self._change_job(request, change)
        note(request, "job.retry", job.account_id, str(job.id), before=before, after=job_summary(job),
             forced=body.force and before.get("state") == JobState.DONE.value, reason=body.reason)
        self._wake(f"job {job.id} retried")
        return answer(s.JobActionOut, {"id": str(job.id), "state": job.state, "version": job.version,
                                       "status": "done"})

    @requires(OPERATOR, account_from="handler")
    async def cancel_job(self, request: web.Request) -> web.Response:
        """Cancel a job that is waiting, retrying or suspended. A job in flight is not touched (its call
        actor owns it until the call ends): the request is kept and applied once the job leaves flight —
        answered 202 ``deferred``. A job already final is 409."""
        body = await self._body(request, s.CancelRequest)
        who = principal(request)
        job = await self._job(request)
        reason = f"cancelled by {who.key_id}: {body.reason}".rstrip(": ")
        if job.state == JobState.IN_FLIGHT:
            await _deferred_cancels().replace_one(
                {"_id": job.id}, {"_id": job.id, "key_id": who.key_id, "reason": reason, "at_ms": wall_ms()},
                upsert=True)
            note(request, "job.cancel", job.account_id, str(job.id), before=job_summary(job),
                 after={"state": "cancel after the live call"}, reason=body.reason)
            return answer(s.JobActionOut, {"id": str(job.id), "state": job.state, "version": job.version,
                                           "status": "deferred"}, status=202)
        before = job_summary(job)

        def change(j: Job) -> None:
            if j.state not in (JobState.PENDING, JobState.RETRY, JobState.SUSPENDED):
                raise ApiError(409, f"job {j.id} is {j.state.value}; it cannot be cancelled")
            now = self.clock.now()
            j.history.append(Transition(at=now, from_state=j.state, to_state=JobState.CANCELLED, reason=reason))
            j.state, j.last_reason, j.updated_at = JobState.CANCELLED, reason, now

        job = await self._change_job(request, change)
        note(request, "job.cancel", job.account_id, str(job.id), before=before, after=job_summary(job),
             reason=body.reason)
        self._wake(f"job {job.id} cancelled")
        return answer(s.JobActionOut, {"id": str(job.id), "state": job.state, "version": job.version,
                                       "status": "done"})

    async def apply_deferred_cancels(self) -> int:
        """Cancel the jobs whose cancellation waited for their live call to end; how many were applied."""
        applied = 0
        async for row in _deferred_cancels().find({}).limit(500):
            job = await Job.get(row["_id"])
            if job is None or job.state in (JobState.DONE, JobState.FAILED, JobState.EXCLUDED, JobState.CANCELLED):
                await _deferred_cancels().delete_one({"_id": row["_id"]})
                continue
            if job.state == JobState.IN_FLIGHT:
                continue
            now = self.clock.now()
            job.history.append(Transition(at=now, from_state=job.state, to_state=JobState.CANCELLED,
                                          reason=row["reason"]))
            job.state, job.last_reason, job.updated_at = JobState.CANCELLED, row["reason"], now
            if await replace_job(job):
                await _deferred_cancels().delete_one({"_id": row["_id"]})
                log.info("audit", outcome="done", action="job.cancel.applied", key_id=row["key_id"],
                         account_id=job.account_id, target=str(job.id))
                applied += 1
        return applied

    # --- accounts -------------------------------------------------------------------------------------

    async def _account(self, request: web.Request) -> Account:
        account_id = path_id(request, "account_id")
        missing = f"no account {account_id!r}"
        ensure_account(request, account_id, missing)
        account = await Account.get(account_id)
        if account is None:
            raise ApiError(404, missing)
        return account

    @requires()
    async def list_accounts(self, request: web.Request) -> web.Response:
        """Admin keys only. Ordered by id (a small collection: the string range scans)."""
        q = parse_query(request, s.PageQuery)
        after = cursor_key(q.cursor)
        query = {"_id": {"$gt": after}} if after is not None else {}
        rows = await Account.find(query).sort("+_id").limit(q.limit + 1).to_list()
        rows, next_cursor = page(rows, q.limit, lambda a: a.id)
        return answer(s.AccountPage, {"items": [a.model_dump(mode="json") for a in rows], "next_cursor": next_cursor})

    @requires()
    async def create_account(self, request: web.Request) -> web.Response:
        """Admin keys only. An id already used is 409 (its settings are left as they are)."""
        body = await self._body(request, s.AccountCreateRequest)
        account = Account(id=body.id, name=body.name, plan=body.plan, max_concurrent_calls=body.max_concurrent_calls,
                          daily_call_limit=body.daily_call_limit)
        try:
            await account.insert()
        except DuplicateKeyError:
            raise ApiError(409, f"account {body.id!r} exists; change it with PATCH /accounts/{{id}}/settings") \
                from None
        note(request, "account.create", account.id, account.id,
             after=body.model_dump(mode="json", exclude={"id"}))
        log.warning("account_created", account_id=account.id, key_id=principal(request).key_id, plan=body.plan.value)
        return answer(s.AccountOut, account.model_dump(mode="json"), status=201)

    @requires(OPERATOR, VIEWER, BILLING, account_from="path:account_id")
    async def get_account(self, request: web.Request) -> web.Response:
        account = await self._account(request)
        return answer(s.AccountOut, account.model_dump(mode="json"))

    @requires(OPERATOR, BILLING, account_from="path:account_id")
    async def patch_account_settings(self, request: web.Request) -> web.Response:
        """Set ``max_concurrent_calls`` and/or ``daily_call_limit`` (null: no daily limit), and the dialing
        controls of docs/dialing.md (bounds: ``speechai.dialing.limits``; an empty ``chile_rule_override``
        clears it). ``plan`` is billing's: an admin or billing key sets it, an operator key may not; a
        billing key sets nothing else."""
        account = await self._account(request)
        raw = await self._json_object(request)
        try:
            given = s.AccountSettingsRequest.model_validate(raw)
        except ValidationError as exc:
            raise invalid(exc) from None
        who = principal(request)
        if who.role == BILLING and set(raw) - {"plan"}:
            raise ApiError(403, f"a billing key may change only plan, not {', '.join(sorted(set(raw) - {'plan'}))}")
        if who.role == OPERATOR and "plan" in raw:
            raise ApiError(403, "plan is changed by an admin or billing key, not an operator key")
        if "plan" in raw and given.plan is None:
            raise ApiError(422, "plan must be one of unlimited, credits, minutes, got None",
                           problems=[{"field": "plan", "value": None, "error": "may not be null"}])
        body, problems = account_update(account, given.model_dump(mode="json", include=set(raw)))
        if problems:
            raise ApiError(422, "; ".join(p["error"] for p in problems), problems=problems)
        if body.get("max_concurrent_calls", 0) is None:
            raise ApiError(422, "max_concurrent_calls must be a whole number from 1 to 10000, got None",
                           problems=[{"field": "max_concurrent_calls", "value": None, "error": "may not be null"}])
        stored = account.model_dump(mode="json")  # sub-documents (the caller-ID pool) as plain data
        changes = {k: {"before": stored[k], "after": v} for k, v in body.items() if stored[k] != v}
        if changes:
            await Account.get_pymongo_collection().update_one({"_id": account.id}, {"$set": body})
            log.warning("account_settings_changed", account_id=account.id, changes=changes)
            if "chile_rule_override" in changes:
                log.warning("chile_rule_override_changed", account_id=account.id, key_id=principal(request).key_id,
                            **changes["chile_rule_override"])
            self._wake(f"account {account.id} settings changed")
        note(request, "account.settings", account.id, account.id,
             before={k: c["before"] for k, c in changes.items()}, after={k: c["after"] for k, c in changes.items()})
        out = (await self._account(request)).model_dump(mode="json")
        return answer(s.AccountSettingsOut, {**out, "changes": changes})

    @requires(BILLING, account_from="path:account_id")
    async def top_up(self, request: web.Request) -> web.Response:
        """Add cents and/or minutes. One top-up is at most 10^12 cents / 10^9 minutes, and the balance after
        it at most 10^10 cents / 10^8 minutes."""
        account = await self._account(request)
        body = await self._body(request, s.TopUpRequest)
        if body.cents == 0 and body.minutes == 0:
            raise ApiError(422, "nothing to top up: give cents or minutes above 0")
        if account.balance_cents + body.cents > s.MAX_BALANCE["cents"]:
            raise ApiError(422, f"cents: the balance would be {account.balance_cents + body.cents}, above the "
                                f"limit of {s.MAX_BALANCE['cents']}")
        if account.minutes_balance_ms + body.minutes * 60_000 > s.MAX_BALANCE["minutes"] * 60_000:
            raise ApiError(422, f"minutes: the balance would pass the limit of {s.MAX_BALANCE['minutes']} minutes")
        await top_up(account.id, cents=body.cents, ms=body.minutes * 60_000)
        after = await self._account(request)
        note(request, "account.topup", account.id, account.id,
             before={"balance_cents": account.balance_cents, "minutes_balance_ms": account.minutes_balance_ms},
             after={"balance_cents": after.balance_cents, "minutes_balance_ms": after.minutes_balance_ms},
             cents=body.cents, minutes=body.minutes)
        self._wake(f"account {account.id} topped up")
        return answer(s.AccountOut, after.model_dump(mode="json"))

    @requires(OPERATOR, VIEWER, account_from="path:account_id")
    async def list_dnc(self, request: web.Request) -> web.Response:
        """Sorted by key (index account_id, key; the string range is a scan on the embedded server, fine for
        lists of thousands)."""
        account = await self._account(request)
        q = parse_query(request, s.PageQuery)
        after = cursor_key(q.cursor)
        query: dict[str, Any] = {"account_id": account.id}
        if after is not None:
            query["key"] = {"$gt": after}
        entries = await DoNotCall.find(query).sort("+key").limit(q.limit + 1).to_list()
        entries, next_cursor = page(entries, q.limit, lambda e: e.key)
        return answer(s.DoNotCallPage, {"items": [{"key": e.key, "reason": e.reason, "added_at": e.added_at}
                                                  for e in entries], "next_cursor": next_cursor})

    @requires(OPERATOR, account_from="path:account_id")
    async def add_dnc(self, request: web.Request) -> web.Response:
        """The key is stored as the loader stores people (RUT 12345678-5, phone E.164), or it would never
        match a job."""
        account = await self._account(request)
        body = await self._body(request, s.DoNotCallRequest)
        try:
            await DoNotCall(account_id=account.id, key=body.key, reason=body.reason, added_at=self.clock.now()).insert()
        except DuplicateKeyError:
            return answer(s.DoNotCallOut, {"key": body.key, "status": "already listed"})
        note(request, "do_not_call.add", account.id, body.key, after={"key": body.key, "reason": body.reason})
        self._wake(f"account {account.id} do-not-call changed")  # jobs waiting for a line read it again
        return answer(s.DoNotCallOut, {"key": body.key, "status": "added"}, status=201)

    # --- keys and audit -------------------------------------------------------------------------------

    @requires()
    async def list_keys(self, request: web.Request) -> web.Response:
        """Admin keys only. Ids, roles, accounts and states; never a secret or its hash."""
        q = parse_query(request, s.AccountPageQuery)
        after = cursor_key(q.cursor)
        query: dict[str, Any] = {}
        if q.account_id is not None:
            query["account_id"] = q.account_id
        if after is not None:
            query["_id"] = {"$gt": after}
        rows = await ApiKey.find(query).sort("+_id").limit(q.limit + 1).to_list()
        rows, next_cursor = page(rows, q.limit, lambda k: k.id)
        return answer(s.KeyPage, {"items": [_key_out(k) for k in rows], "next_cursor": next_cursor})

    @requires()
    async def create_key(self, request: web.Request) -> web.Response:
        """Admin keys only. The answer's ``token`` is the only copy of the secret."""
        body = await self._body(request, s.KeyCreateRequest)
        if body.role == Role.ADMIN and body.account_id is not None:
            raise ApiError(422, "account_id: an admin key covers every account; leave account_id out")
        if body.role != Role.ADMIN:
            if body.account_id is None:
                raise ApiError(422, f"account_id: a {body.role.value} key needs its account")
            if await Account.get(body.account_id) is None:
                raise ApiError(404, f"no account {body.account_id!r}")
        who = principal(request)
        key, token = await create_key(role=body.role, account_id=body.account_id, name=body.name,
                                      created_by=who.key_id, now=self.clock.now())
        note(request, "key.create", key.account_id, key.id, after={"role": key.role.value, "name": key.name})
        return answer(s.KeyCreated, {**_key_out(key), "token": token}, status=201)

    @requires()
    async def revoke_key(self, request: web.Request) -> web.Response:
        """Admin keys only. Takes effect on the next request made with the key."""
        key_id = path_id(request, "key_id")
        key = await revoke_key(key_id, revoked_by=principal(request).key_id)
        if key is None:
            raise ApiError(404, f"no key {key_id!r}")
        note(request, "key.revoke", key.account_id, key.id, after={"revoked_ms": key.revoked_ms})
        return answer(s.KeyOut, _key_out(key))

    @requires(OPERATOR, VIEWER, account_from="query:account_id")
    async def list_audit(self, request: web.Request) -> web.Response:
        """Newest last, by ``seq`` (an integer range on its index). An account's key sees its account's
        entries; an admin key all, or one account's with ``account_id``."""
        q = parse_query(request, s.AccountPageQuery)
        after = cursor_key(q.cursor)
        query: dict[str, Any] = {}
        if (scope := q.account_id or account_scope(request)) is not None:
            query["account_id"] = scope
        if after is not None:
            if not after.isdigit() or len(after) > 18:
                raise ApiError(422, f"cursor {q.cursor[:80]!r} is not one this endpoint returned")
            query["seq"] = {"$gt": int(after)}
        rows = await AuditEntry.find(query).sort("+seq").limit(q.limit + 1).to_list()
        rows, next_cursor = page(rows, q.limit, lambda e: str(e.seq))
        return answer(s.AuditPage, {"items": [e.model_dump(mode="json") for e in rows], "next_cursor": next_cursor})


async def _batch_account(batch_id: str) -> str | None:
    row = await Batch.get_pymongo_collection().find_one({"_id": batch_id}, {"account_id": 1})
    return None if row is None else row.get("account_id")


async def _job_account(job_id: str) -> str | None:
    try:
        oid = ObjectId(job_id)
    except (InvalidId, TypeError):
        return None
    row = await Job.get_pymongo_collection().find_one({"_id": oid}, {"account_id": 1})
    return None if row is None else row.get("account_id")


# A key refused by its role still gets 404 for another account's batch or job (speechai.api.auth).
register_account_resolver("batch_id", "batch", _batch_account)
register_account_resolver("job_id", "job", _job_account)


def _key_out(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "account_id": key.account_id, "role": key.role, "name": key.name,
            "created_at": key.created_at, "created_by": key.created_by, "revoked": key.revoked_ms is not None,
            "revoked_ms": key.revoked_ms}


def _deferred_cancels() -> Any:
    return Job.get_pymongo_collection().database["job_cancel_requests"]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    headers = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=headers)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
