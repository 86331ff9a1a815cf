"""Human agents' calls: who is asking and what they may see, start and end, the call log, metrics and the
per-person history. The HTTP layer (``speechai.agents.routes``) only parses and answers.

Views: an agent sees their own calls, a supervisor their team's, an account admin (an agent user of role
``admin``, or a control API key of the account not bound to an agent user) every call of the account; an
instance admin key sees every account and names the one it asks about. Another account's calls, users and
people look absent (404).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ReturnDocument

from speechai.api.auth import Principal
from speechai.api.problems import ApiError
from speechai.domain.agent_metrics import Tally, UserMetrics, metrics_by_user, totals
from speechai.loader.normalize import parse_phone, parse_rut
from speechai.runtime.gate import forget_agents
from speechai.store.agent_models import AgentKey, AgentRole, AgentUser, HumanCall, HumanCallStatus
from speechai.store.api_models import Role
from speechai.store.models import Job, epoch_ms

log = structlog.get_logger("speechai.agents")
_SEQ_ID = "human_calls"
SEQ_MAX = 2**62
OTHER_ENDED = "ended_otherwise"  # the tally needs completed apart; the other ended statuses count alike


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    agent: AgentUser | None  # the agent user the key speaks for, if any

    @property
    def role(self) -> AgentRole:
        """The view this request gets: an unbound key of the account sees it as an account admin."""
        return self.agent.role if self.agent is not None else AgentRole.ADMIN

    @property
    def may_write(self) -> bool:
        return self.principal.is_admin or self.agent is not None or self.principal.role == Role.OPERATOR


async def viewer_of(principal: Principal) -> Viewer:
    """One ``_id`` read for the key's binding and one for its agent user."""
    if principal.is_admin:
        return Viewer(principal, None)
    binding = await AgentKey.get(principal.key_id)
    agent = await AgentUser.get(binding.agent_id) if binding is not None else None
    if agent is not None and agent.account_id != principal.account_id:
        agent = None  # a binding never widens a key beyond its own account
    if agent is None and principal.role == Role.AGENT:
        raise ApiError(403, "this agent key is not bound to an agent user")
    return Viewer(principal, agent)


def account_for(viewer: Viewer, asked: str | None) -> str:
    """The account a request is about: the key's own, or the one an instance admin key names."""
    own = viewer.principal.account_id
    if own is None:
        if not asked:
            raise ApiError(422, "account_id: required with an instance admin key (which account?)")
        return asked
    if asked and asked != own:
        raise ApiError(404, f"no account {asked[:100]!r}")
    return own


# --- people -------------------------------------------------------------------------------------------


def person_key_of(phone: str, national_id: str | None, region: str) -> tuple[str, str, str | None]:
    """(person_key, E.164 phone, RUT) as the loader derives them: the RUT when given, else the phone."""
    try:
        number = parse_phone(phone, region).number
    except ValueError as exc:
        raise ApiError(422, f"phone: {exc}, got {phone[:40]!r} (region {region})") from None
    rut = None
    if national_id:
        try:
            rut = parse_rut(national_id)
        except ValueError as exc:
            raise ApiError(422, f"national_id: {exc}, got {national_id[:40]!r}") from None
    return rut or number, number, rut


def normalise_person_key(text: str) -> str:
    """A person key given in a path: a RUT or an E.164 phone, normalised as stored; else as given."""
    try:
        return parse_rut(text)
    except ValueError:
        pass
    if text.startswith("+"):
        try:
            return parse_phone(text, "CL").number
        except ValueError:
            pass
    return text


# --- agent users --------------------------------------------------------------------------------------


async def create_agent(*, account_id: str, name: str, role: AgentRole, team: str | None, now: datetime) -> AgentUser:
    if role != AgentRole.ADMIN and not team:
        raise ApiError(422, f"team: required for an agent user of role {role.value!r}")
    agent = AgentUser(id=f"agt_{secrets.token_hex(8)}", account_id=account_id, name=name, role=role, team=team,
                      created_at=now, created_ms=epoch_ms(now))
    await agent.insert()
    forget_agents(account_id)  # this instance's dial gate counts the account's human calls from now on
    return agent


async def bind_key(key_id: str, agent: AgentUser) -> None:
    await AgentKey(id=key_id, agent_id=agent.id, account_id=agent.account_id).insert()


async def visible_users(viewer: Viewer, account_id: str) -> list[AgentUser]:
    """The agent users this viewer's metrics cover (indexed reads on account, or account and team)."""
    if viewer.agent is not None and viewer.role == AgentRole.AGENT:
        return [viewer.agent]
    query: dict[str, Any] = {"account_id": account_id}
    if viewer.agent is not None and viewer.role == AgentRole.SUPERVISOR:
        query["team"] = viewer.agent.team
    return await AgentUser.find(query).sort("+created_ms").to_list()


async def scope_filter(viewer: Viewer, account_id: str, user_id: str | None) -> dict[str, Any]:
    """The call filter of this viewer's view, narrowed to ``user_id`` when asked (404 outside the view)."""
    agent, role = viewer.agent, viewer.role
    if user_id:
        user = await AgentUser.get(user_id)
        visible = user is not None and user.account_id == account_id and (
            role == AgentRole.ADMIN or (role == AgentRole.SUPERVISOR and agent is not None
                                        and user.team == agent.team)
            or (agent is not None and user.id == agent.id))
        if not visible:
            raise ApiError(404, f"no agent user {user_id[:100]!r}")
        return {"account_id": account_id, "user_id": user_id}
    if agent is not None and role == AgentRole.AGENT:
        return {"account_id": account_id, "user_id": agent.id}
    if agent is not None and role == AgentRole.SUPERVISOR:
        return {"account_id": account_id, "team": agent.team}
    return {"account_id": account_id}


# --- calls --------------------------------------------------------------------------------------------


async def _next_seq() -> int:
    counters = HumanCall.get_pymongo_collection().database["human_call_seq"]
    row = await counters.find_one_and_update({"_id": _SEQ_ID}, {"$inc": {"n": 1}}, upsert=True,
                                             return_document=ReturnDocument.AFTER)
    return int(row["n"])


async def start_call(viewer: Viewer, *, phone: str, national_id: str | None, region: str, job_id: str | None,
                     notes: str, now: datetime) -> HumanCall:
    agent = viewer.agent
    if agent is None:
        raise ApiError(403, "starting a call needs the key of an agent user (POST /agents creates one)")
    if job_id:
        job = await _job(job_id)
        if job is None or job.account_id != agent.account_id:
            raise ApiError(404, f"no job {job_id[:100]!r}")
        # the job's own key: the call and the campaign's caps then speak of the same person
        person_key, number, rut = job.person_key, person_key_of(phone, None, region)[1], job.national_id
    else:
        person_key, number, rut = person_key_of(phone, national_id, region)
    call = HumanCall(id=f"hc_{secrets.token_hex(8)}", seq=await _next_seq(), account_id=agent.account_id,
                     user_id=agent.id, team=agent.team, person_key=person_key, phone=number, national_id=rut,
                     job_id=job_id or None, notes=notes, started_at=now, started_ms=epoch_ms(now))
    await call.insert()
    log.info("agent_call_started", account_id=call.account_id, agent_call_id=call.id, user_id=call.user_id,
             status=call.status.value)
    return call


async def _job(job_id: str) -> Job | None:
    try:
        return await Job.get(ObjectId(job_id))
    except InvalidId:
        return None


async def visible_call(viewer: Viewer, call_id: str) -> HumanCall:
    """The call, or 404 when it does not exist or lies outside this viewer's view."""
    call = await HumanCall.get(call_id)
    if call is None or not viewer.principal.sees(call.account_id) or not _in_view(viewer, call):
        raise ApiError(404, f"no call {call_id[:100]!r}")
    return call


def _in_view(viewer: Viewer, call: HumanCall) -> bool:
    agent = viewer.agent
    if agent is None or viewer.role == AgentRole.ADMIN:
        return True
    if viewer.role == AgentRole.SUPERVISOR:
        return call.team == agent.team or call.user_id == agent.id
    return call.user_id == agent.id


async def end_call(viewer: Viewer, call_id: str, *, status: HumanCallStatus, outcome: str | None,
                   notes: str | None, resolved: bool, now: datetime) -> HumanCall:
    """End a call in progress; its duration is the server clock's ``now`` minus its start."""
    if not viewer.may_write:
        raise ApiError(403, f"a {viewer.principal.role.value} key may not end calls")
    call = await visible_call(viewer, call_id)
    if call.status != HumanCallStatus.IN_PROGRESS:
        raise ApiError(409, f"call {call.id} already ended (status {call.status.value})")
    ended_ms = max(epoch_ms(now), call.started_ms)  # a clock never makes a negative duration
    done = call.model_copy(update={"status": status, "outcome": outcome, "resolved": resolved,
                                   "notes": call.notes if notes is None else notes, "ended_at": now,
                                   "ended_ms": ended_ms, "duration_ms": ended_ms - call.started_ms,
                                   "version": call.version + 1})
    # replaced whole, conditional on the version read: of two ends at once exactly one wins
    doc = done.model_dump(by_alias=True, mode="python")
    result = await HumanCall.get_pymongo_collection().replace_one({"_id": call.id, "version": call.version}, doc)
    if result.matched_count != 1:
        raise ApiError(409, f"call {call.id} was ended meanwhile")
    log.info("agent_call_ended", account_id=done.account_id, agent_call_id=done.id, user_id=done.user_id,
             status=done.status.value, outcome=done.outcome, duration_ms=done.duration_ms)
    return done


@dataclass(frozen=True)
class CallPage:
    calls: list[HumanCall]
    next_cursor: int | None


async def list_calls(query: dict[str, Any], *, limit: int, cursor: int | None) -> CallPage:
    """Newest first, on the integer ``seq`` (an index range); ``next_cursor`` when more remain."""
    # always a range on seq: with it the embedded server reads the scope's index even when the query also
    # holds a time range (without it, a range on started_ms alone makes it scan; tests pin the plans)
    query = {**query, "seq": {"$lt": cursor if cursor is not None else SEQ_MAX}}
    rows = await HumanCall.get_pymongo_collection().find(query).sort("seq", -1).limit(limit + 1).to_list()
    calls = [HumanCall.model_validate(r) for r in rows[:limit]]
    return CallPage(calls, calls[-1].seq if len(rows) > limit else None)


def _when(status: str, then: Any) -> dict[str, Any]:
    return {"$cond": [{"$eq": ["$status", status]}, then, 0]}


async def metrics(query: dict[str, Any], users: list[AgentUser]) -> tuple[list[UserMetrics], UserMetrics]:
    """Per-user figures from one aggregate: calls, in progress, completed and their summed durations per user
    (the embedded server groups on one field, so the statuses are summed with ``$cond``)."""
    done, live = HumanCallStatus.COMPLETED.value, HumanCallStatus.IN_PROGRESS.value
    rows = await HumanCall.get_pymongo_collection().aggregate([
        {"$match": {**query, "seq": {"$lt": SEQ_MAX}}},  # the seq range keeps it on an index (list_calls)
        {"$group": {"_id": "$user_id", "n": {"$sum": 1}, "live": {"$sum": _when(live, 1)},
                    "done": {"$sum": _when(done, 1)}, "done_ms": {"$sum": _when(done, "$duration_ms")}}}])
    tallies: dict[str, Tally] = {u.id: Tally() for u in users}
    async for row in rows:
        tally = tallies.setdefault(row["_id"], Tally())
        n, n_live, n_done = int(row["n"]), int(row["live"]), int(row["done"])
        tally.add(done, int(row["done_ms"] or 0), n_done)
        tally.add(live, None, n_live)
        tally.add(OTHER_ENDED, None, n - n_done - n_live)
    return metrics_by_user(tallies), totals(tallies)


def call_json(call: HumanCall) -> dict[str, Any]:
    return {"id": call.id, "account_id": call.account_id, "user_id": call.user_id, "team": call.team,
            "person_key": call.person_key, "phone": call.phone, "job_id": call.job_id, "status": call.status.value,
            "outcome": call.outcome, "resolved": call.resolved, "notes": call.notes,
            "started_at": call.started_at.isoformat(),
            "ended_at": call.ended_at.isoformat() if call.ended_at else None, "duration_ms": call.duration_ms}


def agent_json(agent: AgentUser) -> dict[str, Any]:
    return {"id": agent.id, "account_id": agent.account_id, "name": agent.name, "role": agent.role.value,
            "team": agent.team, "created_at": agent.created_at.isoformat()}


# --- per-person history -------------------------------------------------------------------------------


async def person_history(account_id: str, person_key: str, limit: int) -> list[dict[str, Any]]:
    """AI attempts (from the person's jobs) and human calls, newest first; two indexed equality reads."""
    items: list[tuple[datetime, dict[str, Any]]] = []
    async for job in Job.find({"person_key": person_key, "account_id": account_id}):
        for a in job.attempts:
            if a.placed is False:
                continue  # never reached the provider: not a contact
            at = a.placed_at or a.created_at
            items.append((at, {"kind": "ai", "at": at.isoformat(), "job_id": str(job.id), "batch_id": job.batch_id,
                               "attempt_id": a.attempt_id, "call_id": a.call_id, "phone": a.phone,
                               "status": a.call_status, "outcome": a.outcome, "success": a.success,
                               "duration_ms": a.duration_ms}))
    async for call in HumanCall.find({"person_key": person_key, "account_id": account_id}):
        items.append((call.started_at, {"kind": "human", "at": call.started_at.isoformat(), "call_id": call.id,
                                        "user_id": call.user_id, "phone": call.phone, "job_id": call.job_id,
                                        "status": call.status.value, "outcome": call.outcome,
                                        "success": call.resolved, "duration_ms": call.duration_ms}))
    items.sort(key=lambda it: it[0], reverse=True)
    return [body for _, body in items[:limit]]
