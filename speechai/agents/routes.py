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
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from speechai.agents import service
from speechai.agents.service import Viewer
from speechai.api.audit import note
from speechai.api.auth import create_key, principal, requires
from speechai.api.openapi import documented
from speechai.api.problems import ApiError, invalid
from speechai.api.routes import parse_query
from speechai.runtime.webhooks import JsonBodyError, parse_json, read_body
from speechai.store.agent_models import ENDED_STATUSES, AgentRole, HumanCallStatus
from speechai.store.api_models import Role
from speechai.store.models import epoch_ms

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_ID_CHARS = 256
# what only the server's clock decides: refused by name when a client sends it
SERVER_FIELDS = ("duration_ms", "duration", "duration_seconds", "started_at", "ended_at", "started_ms", "ended_ms")
ANY_KEY = (Role.OPERATOR, Role.VIEWER, Role.AGENT)  # billing keys deal in money, not calls
MAX_BODY_BYTES = 64 * 2**10


def _unicode(text: str) -> str:
    """Text the database can hold: an unpaired surrogate (a JSON escape or bytes that are not UTF-8) is
    refused here rather than failing the write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds characters that are not valid UTF-8") from None
    return text


Text = Annotated[str, Field(max_length=MAX_ID_CHARS), AfterValidator(_unicode)]
When = Annotated[str, Field(max_length=40, description="YYYY-MM-DD (a local day in tz) or an ISO-8601 time "
                                                        "with its offset"), AfterValidator(_unicode)]


class AgentListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: Text | None = Field(None, description="an admin key: which account (else the key's own)")


class HistoryQuery(AgentListQuery):
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class _SpanQuery(AgentListQuery):
    user_id: Text | None = Field(None, description="only this agent user")
    to: When | None = None
    tz: Text | None = Field(None, description="IANA time zone of from/to days (default UTC)")


# ``from`` is a Python keyword: the field is named as the query parameter through create_model
MetricsQuery = create_model("MetricsQuery", __base__=_SpanQuery, **{"from": (When | None, None)})


class CallListQuery(MetricsQuery):  # type: ignore[misc,valid-type]
    status: HumanCallStatus | None = None
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    cursor: int | None = Field(None, ge=1, le=2**62, description="next_cursor of the previous page")


class CallPath(BaseModel):
    call_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)


class PersonPath(BaseModel):
    person_key: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="a RUT or a phone")


class AgentOut(BaseModel):
    id: str
    account_id: str
    name: str
    role: AgentRole
    team: str | None
    created_at: str


class AgentCreated(BaseModel):
    agent: AgentOut
    key_id: str
    token: str = Field(description="the agent's API key: shown only in this answer")


class AgentList(BaseModel):
    agents: list[AgentOut]


class CallOut(BaseModel):
    id: str
    account_id: str
    user_id: str
    team: str | None
    person_key: str
    phone: str
    job_id: str | None
    status: HumanCallStatus
    outcome: str | None
    resolved: bool
    notes: str | None
    started_at: str
    ended_at: str | None
    duration_ms: int | None


class CallPage(BaseModel):
    calls: list[CallOut]
    next_cursor: str | None


class AgentMetrics(BaseModel):
    account_id: str
    view: str
    users: list[dict[str, Any]] = Field(description="per agent user: calls, successes, failures, AHT, talk time")
    totals: dict[str, Any]


class PersonCalls(BaseModel):
    person_key: str
    calls: list[dict[str, Any]] = Field(description="AI attempts (kind ai) and human calls (kind human), "
                                                    "newest first")


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
    try:  # the strict reader of the core routes: no NaN/Infinity, bounded nesting, valid Unicode
        raw = parse_json(await read_body(request, MAX_BODY_BYTES), int64=False)
    except JsonBodyError as exc:
        raise ApiError(422, f"body: {exc}") from None
    if not isinstance(raw, dict):
        raise ApiError(422, f"body: must be a JSON object, got {type(raw).__name__}")
    for name in SERVER_FIELDS:
        if name in raw:
            raise ApiError(422, f"{name}: computed by the server from its clock, never taken from the client; "
                                f"do not send it (got {json.dumps(raw[name], default=str)[:40]})")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(exc) from None


def _path(request: web.Request, name: str) -> str:
    value = request.match_info[name][:MAX_ID_CHARS]
    try:
        return _unicode(value)
    except ValueError as exc:
        raise ApiError(422, f"{name}: {exc}") from None


def _span(q: BaseModel) -> dict[str, str]:
    """from/to/tz of a query model, as the time-range helpers read them."""
    return {k: v for k in ("from", "to", "tz") if (v := getattr(q, k, None))}


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


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


def agent_routes(*, clock: Any) -> list[web.RouteDef]:
    async def viewer(request: web.Request) -> Viewer:
        return await service.viewer_of(principal(request))

    @documented(tag="agents", body=NewAgent, ok=AgentCreated, ok_status=201)
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

    @documented(tag="agents", query=AgentListQuery, ok=AgentList)
    @requires(*ANY_KEY, account_from="handler")
    async def list_agents(request: web.Request) -> web.Response:
        """The agent users in the caller's view (agent: self; supervisor: team; admin: the account)."""
        q = parse_query(request, AgentListQuery)
        who = await viewer(request)
        account_id = service.account_for(who, q.account_id)
        return _json({"agents": [service.agent_json(a) for a in await service.visible_users(who, account_id)]})

    @documented(tag="agents", body=StartCall, ok=CallOut, ok_status=201, errors=(409,))
    @requires(*ANY_KEY, account_from="handler")
    async def start_call(request: web.Request) -> web.Response:
        """Start a human agent's call; the server records its start time."""
        who = await viewer(request)
        body: StartCall = await _body(request, StartCall)
        call = await service.start_call(who, phone=body.phone, national_id=body.national_id, region=body.region,
                                        job_id=body.job_id, notes=body.notes, now=clock.now())
        note(request, "agent_call.start", call.account_id, call.id)
        return _json(service.call_json(call), 201)

    @documented(tag="agents", path=CallPath, body=EndCall, ok=CallOut, errors=(409,))
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

    @documented(tag="agents", query=CallListQuery, ok=CallPage)
    @requires(*ANY_KEY, account_from="handler")
    async def list_calls(request: web.Request) -> web.Response:
        """The call log, newest first (user_id, status, from, to, tz; limit up to 1000; cursor)."""
        q = parse_query(request, CallListQuery)
        span = _time_range(_span(q))
        who = await viewer(request)
        account_id = service.account_for(who, q.account_id)
        query = await service.scope_filter(who, account_id, q.user_id)
        if q.status is not None:
            query["status"] = q.status.value
        if span:
            query["started_ms"] = span
        page = await service.list_calls(query, limit=q.limit, cursor=q.cursor)
        return _json({"calls": [service.call_json(c) for c in page.calls],
                      "next_cursor": str(page.next_cursor) if page.next_cursor is not None else None})

    @documented(tag="agents", query=MetricsQuery, ok=AgentMetrics)
    @requires(*ANY_KEY, account_from="handler")
    async def metrics(request: web.Request) -> web.Response:
        """Per-user call figures (calls, successes, failures, AHT, talk time, success rate) in the caller's view."""
        q = parse_query(request, MetricsQuery)
        span = _time_range(_span(q))
        who = await viewer(request)
        account_id = service.account_for(who, q.account_id)
        query = await service.scope_filter(who, account_id, q.user_id)
        if span:
            query["started_ms"] = span
        users = await service.visible_users(who, account_id)
        if q.user_id:
            users = [u for u in users if u.id == q.user_id]
        per_user, total = await service.metrics(query, users)
        names = {u.id: u for u in users}
        rows = [{**m.as_json(), "name": names[m.user_id].name if m.user_id in names else None,
                 "team": names[m.user_id].team if m.user_id in names else None} for m in per_user]
        return _json({"account_id": account_id, "view": who.role.value, "users": rows,
                      "totals": {k: v for k, v in total.as_json().items() if k != "user_id"}})

    @documented(tag="agents", path=PersonPath, query=HistoryQuery, ok=PersonCalls)
    @requires(*ANY_KEY, account_from="handler")
    async def person_calls(request: web.Request) -> web.Response:
        """One person's calls, AI attempts and human agents' calls together, newest first."""
        q = parse_query(request, HistoryQuery)
        who = await viewer(request)
        account_id = service.account_for(who, q.account_id)
        key = service.normalise_person_key(_path(request, "person_key"))
        return _json({"person_key": key, "calls": await service.person_history(account_id, key, q.limit)})

    return [web.post("/agents", create_agent), web.get("/agents", list_agents),
            web.get("/agents/metrics", metrics),
            web.post("/agent-calls", start_call), web.get("/agent-calls", list_calls),
            web.post("/agent-calls/{call_id}/end", end_call),
            web.get("/people/{person_key}/calls", person_calls)]
