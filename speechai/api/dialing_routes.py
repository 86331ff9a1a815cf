"""Dialing routes of the control endpoint (docs/dialing.md):

- ``PATCH /batches/{batch_id}/dialing`` — a batch's ``caller_ids``, ``caller_id_daily_cap``, ``use_case``,
  ``agent_split`` (bounds: ``speechai.dialing.limits``; a change that breaks the Chile caller-ID rule is
  refused unless the account carries an override). Operator; audited with before/after.
- ``POST /accounts/{account_id}/paid`` — "these people paid": a JSON list of RUTs and/or phones (or
  ``{"keys": [...]}``), or a CSV (``text/csv``, first column). Their waiting jobs stop at once (excluded,
  reason ``paid``); jobs in flight finish their call and are never dialed again. Operator; audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel, StrictInt, StrictStr, ValidationError

from speechai.api.audit import note
from speechai.api.auth import ensure_account, requires
from speechai.api.openapi import documented
from speechai.api.problems import ApiError, invalid
from speechai.api.schemas import CallerIdIn, do_not_call_key
from speechai.dialing import paid
from speechai.dialing.ab import MAX_WEIGHT
from speechai.dialing.limits import batch_errors
from speechai.domain.caller_id_rules import batch_caller_id_violations
from speechai.runtime.webhooks import JsonBodyError, parse_json
from speechai.store.api_models import Role
from speechai.store.models import Account, Batch

MAX_BODY_BYTES = 2**20  # a paid list of 10,000 keys fits (the control endpoint's JSON limit)
DIALING_FIELDS = ("caller_ids", "caller_id_daily_cap", "use_case", "agent_split")


class AgentArmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    weight: float = Field(1.0, le=MAX_WEIGHT, allow_inf_nan=False,
                          description=f"relative weight, above 0 and at most {MAX_WEIGHT:,}")


class BatchDialingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    caller_ids: list[CallerIdIn] | None = Field(None, description="the batch's own pool; [] or null: the account's")
    caller_id_daily_cap: StrictInt | None = Field(None, description="null: the account's cap")
    use_case: StrictStr | None = Field(None, description="collection | reminder | survey | marketing; null: unchecked")
    agent_split: list[AgentArmIn] | None = Field(None, description="2-4 arms; [] or null: the batch's agent_id")


class BatchPath(BaseModel):
    batch_id: str = Field(min_length=1, max_length=256)


class AccountPath(BaseModel):
    account_id: str = Field(min_length=1, max_length=256)


class AgentArmOut(BaseModel):
    agent_id: str
    weight: float


class BatchDialingOut(BaseModel):
    """The batch's dialing fields after the change, and what changed (before/after per field)."""

    id: str
    caller_ids: list[dict[str, Any]]
    caller_id_daily_cap: int | None
    use_case: str | None
    agent_split: list[AgentArmOut]
    changes: dict[str, dict[str, Any]]


PaidKey = Annotated[StrictStr, Field(max_length=200, description="a RUT (12345678-5) or a phone (+56987654321)")]
PaidKeyList = Annotated[list[PaidKey], Field(max_length=paid.MAX_KEYS)]


class PaidKeysObject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: PaidKeyList


class PaidRequest(RootModel[PaidKeyList | PaidKeysObject]):
    """The people who paid: a JSON list of RUTs and/or phones, or ``{"keys": [...]}``."""

    def keys(self) -> list[str]:
        return self.root.keys if isinstance(self.root, PaidKeysObject) else list(self.root)


class PaidOut(BaseModel):
    keys: int = Field(description="distinct people in the list")
    stopped: int = Field(description="waiting jobs now excluded")
    live: int = Field(description="jobs in a call now: it goes on, they are never dialed again")
    already_final: int
    unmatched: list[str] = Field(description="keys that matched no job of the account")
    do_not_call_added: int


PAID_CSV = {"type": "string", "description": "CSV (text/csv or text/plain): the first column of each row, "
                                             "a header row without digits skipped"}


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"body of {request.content_length} bytes; at most {MAX_BODY_BYTES}")
    chunks, size = [], 0
    while chunk := await request.content.read(2**16):  # read(n) returns what has arrived, up to n
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes) -> Any:
    """Strict JSON, as the core routes read it (no NaN/Infinity, bounded nesting, valid Unicode);
    integers beyond 64 bits are left to the model, which names the field."""
    try:
        return parse_json(body, int64=False)
    except JsonBodyError as exc:
        raise ApiError(400, str(exc)) from None


def _paid_keys(value: Any) -> list[str]:
    """The list of the body, through the model the document shows; 422 naming ``keys`` otherwise."""
    if isinstance(value, list) and len(value) > paid.MAX_KEYS:
        paid.check_size(value)  # the count, not 100,000 item errors
    try:
        return PaidRequest.model_validate(value).keys()
    except ValidationError:
        raise ValueError("keys: expected a JSON list of RUTs and/or phones (text, up to 200 characters each), "
                         'or {"keys": [...]}') from None


def _field_of(error: str) -> str:
    """The field a bounds error names first ("caller_ids: ...", "use_case 'x' is not ...")."""
    return error.replace(":", " ").split(" ", 1)[0]


def dialing_routes(*, clock: Any, default_from_number: str | None = None,
                   wake: Callable[[str], object] | None = None) -> list[web.RouteDef]:
    """``default_from_number``: the configured ``retell.from_number`` (what a batch without numbers of its
    own calls from); ``wake``: tells the scheduler to read batches and accounts afresh."""

    def woken(reason: str) -> None:
        if wake is not None:
            wake(reason)

    @documented(tag="dialing", path=BatchPath, body=BatchDialingRequest, ok=BatchDialingOut)
    @requires(Role.OPERATOR, account_from="handler")
    async def patch_batch_dialing(request: web.Request) -> web.Response:
        """Change a batch's caller ids, their daily cap, its use case or its A/B agent split."""
        batch_id = request.match_info["batch_id"]
        batch = await Batch.get(batch_id)
        if batch is None:
            raise ApiError(404, f"no batch {batch_id!r}")
        ensure_account(request, batch.account_id, f"no batch {batch_id!r}")
        raw = _json(await _body(request))
        if not isinstance(raw, dict):
            raise ApiError(400, "body must be a JSON object")
        try:
            given = BatchDialingRequest.model_validate(raw)
        except ValidationError as exc:
            raise invalid(exc) from None
        changes = {k: ([] if v is None and k in ("caller_ids", "agent_split") else v)
                   for k, v in given.model_dump(include=set(raw)).items()}
        stored = batch.model_dump(mode="json")
        candidate = Batch.model_validate({**batch.model_dump(), **changes})
        errors = batch_errors(candidate)
        if errors:
            raise ApiError(422, "; ".join(errors), problems=[
                {"field": _field_of(e), "value": raw.get(_field_of(e)), "error": e} for e in errors])
        account = await Account.get(batch.account_id)
        pool = candidate.caller_ids or (account.caller_ids if account is not None else [])
        violations = batch_caller_id_violations(
            use_case=candidate.use_case, pool=[e.number for e in pool], from_number=candidate.from_number,
            default_from_number=default_from_number or "", preset=candidate.call_settings.preset)
        violations = [v for v in violations if any(v.numbers)]
        if violations and (account is None or not account.chile_rule_override):
            text = "; ".join(v.message for v in violations)
            raise ApiError(422, f"{text}. An account may dial anyway only with an explicit chile_rule_override",
                           problems=[{"field": "caller_ids", "value": list(v.numbers), "error": v.message}
                                     for v in violations])
        diff = {k: {"before": stored[k], "after": v} for k, v in changes.items() if stored[k] != v}
        if diff:
            await Batch.get_pymongo_collection().update_one({"_id": batch.id}, {"$set": changes})
            woken(f"batch {batch.id} dialing settings changed")
        note(request, "batch.dialing", batch.account_id, batch.id,
             before={k: d["before"] for k, d in diff.items()}, after={k: d["after"] for k, d in diff.items()},
             chile_rule_overridden=bool(violations))
        fresh = await Batch.get(batch.id)
        assert fresh is not None
        out = {k: fresh.model_dump(mode="json")[k] for k in DIALING_FIELDS}
        return web.json_response(BatchDialingOut.model_validate({"id": batch.id, **out, "changes": diff})
                                 .model_dump(mode="json"))

    @documented(tag="dialing", path=AccountPath, body=PaidRequest, other_bodies={"text/csv": PAID_CSV},
                ok=PaidOut)
    @requires(Role.OPERATOR, account_from="path:account_id")
    async def post_paid(request: web.Request) -> web.Response:
        """These people paid: their waiting jobs stop at once, those in a call are never dialed again."""
        account_id = request.match_info["account_id"]
        if await Account.get(account_id) is None:
            raise ApiError(404, f"no account {account_id!r}")
        body = await _body(request)
        try:
            if request.content_type in ("text/csv", "text/plain"):
                entries = paid.entries_of_csv(body.decode("utf-8-sig"))
            else:
                entries = _paid_keys(_json(body))
            paid.check_size(entries)
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"body is not UTF-8 text: {exc}") from None
        except ValueError as exc:
            raise ApiError(422, str(exc), problems=[{"field": "keys", "value": None, "error": str(exc)}]) from None
        keys, bad = paid.read_keys(entries, do_not_call_key)
        if bad:
            raise ApiError(422, f"keys: {len(bad)} entries are neither a RUT (12345678-5) nor a phone "
                                f"(+56987654321): {', '.join(map(repr, bad[:20]))}; nothing was changed",
                           problems=[{"field": "keys", "value": b, "error": "not a RUT or a phone"} for b in bad[:100]])
        if not keys:
            raise ApiError(422, "keys: the list is empty", problems=[{"field": "keys", "value": [], "error": "empty"}])
        result = await paid.mark_paid(account_id, keys, clock.now())
        note(request, "jobs.paid", account_id, account_id, after=result.to_dict() | {"keys": len(keys)})
        woken(f"account {account_id}: {result.stopped} jobs stopped as paid")
        return web.json_response(PaidOut.model_validate({"keys": len(keys), **result.to_dict()}).model_dump())

    return [web.patch("/batches/{batch_id}/dialing", patch_batch_dialing),
            web.post("/accounts/{account_id}/paid", post_paid)]
