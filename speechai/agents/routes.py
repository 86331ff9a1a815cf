"""Control API routes of human agents' calls (docs/agents.md):

- ``POST /agents`` — an agent user and its first key (operator keys, account admins, instance admin);
- ``GET /agents`` — the agent users in the caller's view;
- ``POST /agent-calls`` — start a call (an agent user's key); ``POST /agent-calls/{call_id}/end`` — end it;
- ``GET /agent-calls`` — the call log: filters ``user_id``, ``status``, ``from``/``to``; ``limit`` ≤ 1,000,
  ``cursor`` from the previous page;
- ``GET /agents/metrics`` — per-user figures in the caller's view;
- ``GET /people/{person_key}/calls`` — one person's AI attempts and human calls, newest first.

Every route finds its account itself (``account_from="handler"``): another account's things answer 404.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechai.agents import service
from speechai.agents.service import Viewer
from speechai.api.audit import note
from speechai.api.auth import create_key, principal, requires
from speechai.api.problems import ApiError, invalid
from speechai.store.agent_models import ENDED_STATUSES, AgentRole, HumanCallStatus
from speechai.store.api_models import Role
from speechai.store.models import epoch_ms

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_ID_CHARS = 256
# what only the server's clock decides: refused by name when a client sends it
SERVER_FIELDS = ("duration_ms", "duration", "duration_seconds", "started_at", "ended_at", "started_ms", "ended_ms")
LIST_KEYS = ("account_id", "user_id", "status", "from", "to", "tz", "limit", "cursor")
METRIC_KEYS = ("account_id", "user_id", "from", "to", "tz")
HISTORY_KEYS = ("account_id", "limit")
AGENT_LIST_KEYS = ("account_id",)
ANY_KEY = (Role.OPERATOR, Role.VIEWER, Role.AGENT)  # billing keys deal in money, not calls


class NewAgent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS)
    name: str = Field(min_length=1, max_length=200)
    role: AgentRole = AgentRole.AGENT
    team: str | None = Field(None, min_length=1, max_length=100)


class StartCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=1, max_length=40)
    national_id: str | None = Field(None, max_length=40)
    region: str = Field("CL", pattern=r"^[A-Z]{2}$")
    job_id: str | None = Field(None, max_length=64)
    notes: str = Field("", max_length=2000)


class EndCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: HumanCallStatus
    outcome: str | None = Field(None, max_length=100)
    notes: str | None = Field(None, max_length=2000)
    resolved: bool = False


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        raw = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "body: not a JSON object") from None
    if not isinstance(raw, dict):
        raise ApiError(422, f"body: must be a JSON object, got {type(raw).__name__}")
    _storable("body", json.dumps(raw, ensure_ascii=False))
    for name in SERVER_FIELDS:
        if name in raw:
            raise ApiError(422, f"{name}: computed by the server from its clock, never taken from the client; "
                                f"do not send it (got {json.dumps(raw[name], default=str)[:40]})")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(exc) from None


def _storable(name: str, text: str) -> str:
    """Text the database can hold: an unpaired surrogate (a JSON escape or bytes that are not UTF-8) is
    refused here rather than failing the write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, f"{name}: holds characters that are not valid UTF-8") from None
    return text


def _path(request: web.Request, name: str) -> str:
    return _storable(name, request.match_info[name][:MAX_ID_CHARS])


def _query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise ApiError(422, f"unknown query parameter(s) {', '.join(repr(k[:40]) for k in unknown)}; "
                            f"allowed: {', '.join(allowed)}")
    out: dict[str, str] = {}
    for key in allowed:
        values = request.query.getall(key, [])
        if len(values) > 1:
            raise ApiError(422, f"{key}: given more than once")
        if values:
            if len(values[0]) > MAX_ID_CHARS:
                raise ApiError(422, f"{key}: longer than {MAX_ID_CHARS} characters")
            out[key] = _storable(key, values[0])
    return out


def _int(q: dict[str, str], name: str, low: int, high: int, default: int | None) -> int | None:
    text = q.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(422, f"{name}: must be a whole number from {low} to {high}, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(422, f"{name}: must be from {low} to {high}, got {value}")
    return value


def _zone(q: dict[str, str]) -> ZoneInfo:
    name = q.get("tz") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiError(422, f"tz: not an IANA time zone, got {name[:40]!r}") from None


def _instant(name: str, text: str, tz: ZoneInfo, *, end: bool) -> int:
    """Epoch ms of ``from``/``to``: a date (local midnight in ``tz``; ``to`` includes its whole day) or an
    ISO-8601 time with its offset."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        at = datetime.combine(day + timedelta(days=1 if end else 0), datetime.min.time(), tz)
        return epoch_ms(at)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(422, f"{name}: must be YYYY-MM-DD or an ISO-8601 time with offset, got {text[:40]!r}") from None
    if at.tzinfo is None:
        raise ApiError(422, f"{name}: a time needs its UTC offset, got {text[:40]!r}")
    return epoch_ms(at) + (1 if end else 0)  # a time given as ``to`` is included


def _time_range(q: dict[str, str]) -> dict[str, int]:
    tz = _zone(q)
    out: dict[str, int] = {}
    if q.get("from"):
        out["$gte"] = _instant("from", q["from"], tz, end=False)
    if q.get("to"):
        out["$lt"] = _instant("to", q["to"], tz, end=True)
    if "$gte" in out and "$lt" in out and out["$gte"] >= out["$lt"]:
        raise ApiError(422, f"from: must be before to, got from={q['from'][:40]!r} to={q['to'][:40]!r}")
    return out


def _status(q: dict[str, str]) -> str | None:
    text = q.get("status")
    if not text:
        return None
    allowed = [s.value for s in HumanCallStatus]
    if text not in allowed:
        raise ApiError(422, f"status: must be one of {', '.join(allowed)}, got {text[:40]!r}")
    return text


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


def agent_routes(*, clock: Any) -> list[web.RouteDef]:
    async def viewer(request: web.Request) -> Viewer:
        return await service.viewer_of(principal(request))

    @requires(*ANY_KEY, account_from="handler")
    async def create_agent(request: web.Request) -> web.Response:
        """Create an agent user (agent, supervisor or admin of an account) and its first API key."""
        who = await viewer(request)
        body: NewAgent = await _body(request, NewAgent)
        account_id = service.account_for(who, body.account_id)
        manager = who.principal.is_admin or who.principal.role == Role.OPERATOR or (
            who.agent is not None and who.agent.role == AgentRole.ADMIN)
        if not manager:
            raise ApiError(403, "creating agent users needs an operator key or an account admin's key")
        now = clock.now()
        agent = await service.create_agent(account_id=account_id, name=body.name, role=body.role, team=body.team,
                                           now=now)
        # a viewer key: read-only on the rest of the account; the agent powers come from the binding
        key, token = await create_key(role=Role.AGENT, account_id=account_id, name=f"agent {agent.name}",
                                      created_by=who.principal.key_id, now=now)
        await service.bind_key(key.id, agent)
        note(request, "agent.create", account_id, agent.id, after=service.agent_json(agent), key_id=key.id)
        return _json({"agent": service.agent_json(agent), "key_id": key.id, "token": token}, 201)

    @requires(*ANY_KEY, account_from="handler")
    async def list_agents(request: web.Request) -> web.Response:
        """The agent users in the caller's view (agent: self; supervisor: team; admin: the account)."""
        q = _query(request, AGENT_LIST_KEYS)
        who = await viewer(request)
        account_id = service.account_for(who, q.get("account_id"))
        return _json({"agents": [service.agent_json(a) for a in await service.visible_users(who, account_id)]})

    @requires(*ANY_KEY, account_from="handler")
    async def start_call(request: web.Request) -> web.Response:
        """Start a human agent's call; the server records its start time."""
        who = await viewer(request)
        body: StartCall = await _body(request, StartCall)
        call = await service.start_call(who, phone=body.phone, national_id=body.national_id, region=body.region,
                                        job_id=body.job_id, notes=body.notes, now=clock.now())
        note(request, "agent_call.start", call.account_id, call.id)
        return _json(service.call_json(call), 201)

    @requires(*ANY_KEY, account_from="handler")
    async def end_call(request: web.Request) -> web.Response:
        """End a call in progress; its duration is computed by the server from its clock."""
        who = await viewer(request)
        body: EndCall = await _body(request, EndCall)
        if body.status not in ENDED_STATUSES:
            raise ApiError(422, f"status: must be one of {', '.join(s.value for s in ENDED_STATUSES)}, "
                                f"got {body.status.value!r}")
        call = await service.end_call(who, _path(request, "call_id"), status=body.status,
                                      outcome=body.outcome, notes=body.notes, resolved=body.resolved,
                                      now=clock.now())
        note(request, "agent_call.end", call.account_id, call.id, status=call.status.value,
             duration_ms=call.duration_ms)
        return _json(service.call_json(call))

    @requires(*ANY_KEY, account_from="handler")
    async def list_calls(request: web.Request) -> web.Response:
        """The call log, newest first (user_id, status, from, to, tz; limit up to 1000; cursor)."""
        q = _query(request, LIST_KEYS)
        limit = _int(q, "limit", 1, MAX_PAGE, DEFAULT_PAGE)
        cursor = _int(q, "cursor", 1, 2**62, None)
        status, span = _status(q), _time_range(q)
        who = await viewer(request)
        account_id = service.account_for(who, q.get("account_id"))
        query = await service.scope_filter(who, account_id, q.get("user_id"))
        if status:
            query["status"] = status
        if span:
            query["started_ms"] = span
        page = await service.list_calls(query, limit=limit or DEFAULT_PAGE, cursor=cursor)
        return _json({"calls": [service.call_json(c) for c in page.calls],
                      "next_cursor": str(page.next_cursor) if page.next_cursor is not None else None})

    @requires(*ANY_KEY, account_from="handler")
    async def metrics(request: web.Request) -> web.Response:
        """Per-user call figures (calls, successes, failures, AHT, talk time, success rate) in the caller's view."""
        q = _query(request, METRIC_KEYS)
        span = _time_range(q)
        who = await viewer(request)
        account_id = service.account_for(who, q.get("account_id"))
        query = await service.scope_filter(who, account_id, q.get("user_id"))
        if span:
            query["started_ms"] = span
        users = await service.visible_users(who, account_id)
        if q.get("user_id"):
            users = [u for u in users if u.id == q["user_id"]]
        per_user, total = await service.metrics(query, users)
        names = {u.id: u for u in users}
        rows = [{**m.as_json(), "name": names[m.user_id].name if m.user_id in names else None,
                 "team": names[m.user_id].team if m.user_id in names else None} for m in per_user]
        return _json({"account_id": account_id, "view": who.role.value, "users": rows,
                      "totals": {k: v for k, v in total.as_json().items() if k != "user_id"}})

    @requires(*ANY_KEY, account_from="handler")
    async def person_calls(request: web.Request) -> web.Response:
        """One person's calls, AI attempts and human agents' calls together, newest first."""
        q = _query(request, HISTORY_KEYS)
        limit = _int(q, "limit", 1, MAX_PAGE, DEFAULT_PAGE) or DEFAULT_PAGE
        who = await viewer(request)
        account_id = service.account_for(who, q.get("account_id"))
        key = service.normalise_person_key(_path(request, "person_key"))
        return _json({"person_key": key, "calls": await service.person_history(account_id, key, limit)})

    return [web.post("/agents", create_agent), web.get("/agents", list_agents),
            web.get("/agents/metrics", metrics),
            web.post("/agent-calls", start_call), web.get("/agent-calls", list_calls),
            web.post("/agent-calls/{call_id}/end", end_call),
            web.get("/people/{person_key}/calls", person_calls)]
