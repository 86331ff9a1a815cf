"""Segment rules of a batch over the control API (docs/segments.md):

- ``GET /batches/{batch_id}/segments`` — the rules and the not-yet-dialed jobs per segment;
- ``PUT /batches/{batch_id}/segments`` — body ``{"segments": [rules]}`` (``[]``: no segments): validated
  (422 naming the rule and the field), stored on the batch, and every job not yet dialed re-segmented;
  the answer says how many changed segment. Audited as ``batch.segments``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechai.api.audit import note
from speechai.api.auth import ensure_account, requires
from speechai.api.openapi import documented
from speechai.api.problems import ApiError, invalid
from speechai.domain.segments import SegmentRule, check_rules, validate_rules
from speechai.runtime.scheduler import Wake
from speechai.runtime.segment_settings import resegment, seen_fields, undialed_rows
from speechai.runtime.webhooks import JsonBodyError, parse_json, read_body
from speechai.store.api_models import Role
from speechai.store.models import Batch, BatchStatus

MAX_BODY_BYTES = 256 * 2**10
MAX_ID_CHARS = 256


class BatchPath(BaseModel):
    batch_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)


class SegmentsRequest(BaseModel):
    """The batch's whole segmentation; ``[]``: no segments."""

    model_config = ConfigDict(extra="forbid")

    segments: list[SegmentRule]


class SegmentsOut(BaseModel):
    id: str
    segments: list[dict[str, Any]] = Field(description="the rules as stored (defaults left out)")
    undialed_by_segment: dict[str, int] = Field(description="jobs not yet dialed per segment ('': none)")


class SegmentsChanged(BaseModel):
    id: str
    segments: list[dict[str, Any]]
    warnings: list[str]
    changed: int = Field(description="jobs not yet dialed whose segment changed")
    unchanged: int
    skipped: int = Field(description="claimed for a dial meanwhile: left as they were")
    by_segment: dict[str, int]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


async def _batch(request: web.Request) -> Batch:
    batch_id = request.match_info["batch_id"]
    if len(batch_id) > MAX_ID_CHARS:
        raise ApiError(400, f"batch_id is longer than {MAX_ID_CHARS} characters")
    batch = await Batch.get(batch_id)
    if batch is None:
        raise ApiError(404, f"no batch {batch_id!r}")
    ensure_account(request, batch.account_id, f"no batch {batch_id!r}")  # another account's looks like none
    return batch


async def _rules(request: web.Request) -> list[SegmentRule]:
    try:
        body = parse_json(await read_body(request, MAX_BODY_BYTES), int64=False)
    except JsonBodyError as exc:
        raise ApiError(400, str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, 'body must be {"segments": [rules]}')
    try:  # each rule, then the rules as one segmentation (names distinct, one default …)
        return check_rules(SegmentsRequest.model_validate(body).segments)
    except ValidationError as exc:
        raise invalid(exc, "invalid segments") from None


def _dumped(rules: list[SegmentRule]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json", by_alias=True, exclude_defaults=True) for r in rules]


def segment_routes(*, scheduler_ref: Any) -> list[web.RouteDef]:
    """``scheduler_ref``: told to re-read batches after a change (as the settings routes do)."""

    @documented(tag="segments", path=BatchPath, ok=SegmentsOut)
    @requires(Role.OPERATOR, Role.VIEWER, account_from="handler")
    async def get_segments(request: web.Request) -> web.Response:
        """The batch's segment rules and its not-yet-dialed jobs per segment."""
        batch = await _batch(request)
        waiting: dict[str, int] = {}
        for row in await undialed_rows(batch.id):
            key = row.get("segment") or ""
            waiting[key] = waiting.get(key, 0) + 1
        return _json(SegmentsOut(id=batch.id, segments=_dumped(batch.segments),
                                 undialed_by_segment=waiting).model_dump(mode="json"))

    @documented(tag="segments", path=BatchPath, body=SegmentsRequest, ok=SegmentsChanged,
                errors=(409,))
    @requires(Role.OPERATOR, account_from="handler")
    async def put_segments(request: web.Request) -> web.Response:
        """Replace the batch's rules and re-segment its jobs not yet dialed; says how many changed."""
        batch = await _batch(request)
        if batch.status in (BatchStatus.CANCELLED, BatchStatus.LOADING):
            raise ApiError(409, f"batch {batch.id!r} is {batch.status.value}; its segments cannot change")
        rules = await _rules(request)
        rows = await undialed_rows(batch.id)
        errors, warnings = validate_rules(rules, seen_fields(rows), batch.call_settings)
        # a field no waiting job has is an error; with none waiting only the overrides can be checked
        if (rows and errors) or any(e.field == "overrides" for e in errors):
            raise ApiError(422, "invalid segments: " + "; ".join(str(e) for e in errors),
                           problems=[{"rule": e.rule, "field": e.field, "message": e.message} for e in errors])
        before = _dumped(batch.segments)
        await Batch.get_pymongo_collection().update_one({"_id": batch.id}, {"$set": {"segments": _dumped(rules)}})
        batch.segments = rules
        result = await resegment(batch, rules, rows)
        scheduler_ref.tell_nowait(Wake(f"batch {batch.id} segments changed"))
        note(request, "batch.segments", batch.account_id, batch.id, before={"segments": before},
             after={"segments": _dumped(rules)}, **result.to_dict())
        return _json(SegmentsChanged.model_validate({
            "id": batch.id, "segments": _dumped(rules), "warnings": [str(w) for w in warnings],
            **result.to_dict()}).model_dump(mode="json"))

    return [web.get("/batches/{batch_id}/segments", get_segments),
            web.put("/batches/{batch_id}/segments", put_segments)]
