"""Documents of human agents and their calls.

An :class:`AgentUser` is a person of an account who phones people by hand (role agent, supervisor or admin of
that account); an :class:`AgentKey` binds a control API key to one of them (``_id`` is the key id: one
primary-key read per request). A :class:`HumanCall` is one call an agent made: inserted when it starts and
replaced whole when it ends (never a ``$set`` of a datetime, DESIGN.md section 6); its duration is computed
by the server from its clock.

Lists page on ``seq``, a collection-wide integer sequence (integer ranges and sorts are what the embedded
server answers from an index); the times a query filters on are kept as epoch-ms integers beside the dates.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import pymongo
from beanie import Document
from pymongo import IndexModel


class AgentRole(StrEnum):
    AGENT = "agent"  # sees their own calls and metrics
    SUPERVISOR = "supervisor"  # sees their team's
    ADMIN = "admin"  # sees every agent of the account


class HumanCallStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"  # a conversation happened
    NO_ANSWER = "no_answer"
    DROPPED = "dropped"  # cut before the conversation ended
    FAILED = "failed"  # the call could not be made


ENDED_STATUSES = tuple(s for s in HumanCallStatus if s != HumanCallStatus.IN_PROGRESS)


class AgentUser(Document):
    id: str  # type: ignore[assignment]  # "agt_<hex>"
    account_id: str
    name: str
    role: AgentRole
    team: str | None = None  # required for agents and supervisors
    created_at: datetime
    created_ms: int

    class Settings:
        name = "agent_users"
        indexes = [IndexModel([("account_id", pymongo.ASCENDING)]),
                   IndexModel([("account_id", pymongo.ASCENDING), ("team", pymongo.ASCENDING)])]


class AgentKey(Document):
    """The agent a control API key speaks for (``id``: the key's id)."""

    id: str  # type: ignore[assignment]
    agent_id: str
    account_id: str

    class Settings:
        name = "agent_keys"


class HumanCall(Document):
    id: str  # type: ignore[assignment]  # "hc_<hex>"
    seq: int  # page key, newest first
    account_id: str
    user_id: str
    team: str | None = None  # the agent's team when the call started (the supervisor's view)
    person_key: str  # normalised RUT, else the E.164 phone: the key the jobs and the caps use
    phone: str  # E.164
    national_id: str | None = None
    job_id: str | None = None  # the campaign job the call was about, when the agent says so
    status: HumanCallStatus = HumanCallStatus.IN_PROGRESS
    outcome: str | None = None  # free label, e.g. "promise_to_pay"
    resolved: bool = False  # the person's matter is settled: the campaign never calls them again
    notes: str = ""
    started_at: datetime
    started_ms: int
    ended_at: datetime | None = None
    ended_ms: int | None = None
    duration_ms: int | None = None  # ended_ms - started_ms, by the server's clock
    version: int = 0

    class Settings:
        name = "human_calls"
        indexes = [
            # call logs and metrics: equality on every field of an index (all the embedded server answers
            # from a compound index), sorted on seq (the account's view reads the
            # (account_id, team) index by its prefix, as explain() shows)
            IndexModel([("seq", pymongo.ASCENDING)], unique=True),
            IndexModel([("account_id", pymongo.ASCENDING), ("user_id", pymongo.ASCENDING)]),
            IndexModel([("account_id", pymongo.ASCENDING), ("team", pymongo.ASCENDING)]),
            IndexModel([("person_key", pymongo.ASCENDING)]),  # the caps and the per-person history
        ]
