"""Documents of the control API: API keys (hashes only) and the audit log.

Both are inserted whole; a key's revocation is an integer ``$set`` (``revoked_ms``), never a datetime
(DESIGN.md section 6). Lists page on integer fields the embedded server answers from an index.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import pymongo
from beanie import Document
from pydantic import Field
from pymongo import IndexModel


class Role(StrEnum):
    ADMIN = "admin"  # every account, key management
    OPERATOR = "operator"  # one account: batches, uploads, settings, do-not-call, job actions
    VIEWER = "viewer"  # one account, read only
    BILLING = "billing"  # one account: balances and top-ups
    AGENT = "agent"  # a human agent's key: only the agents' routes (docs/agents.md)


class ApiKey(Document):
    """``id`` is the key's public id (``key_…``); the secret is kept only as its SHA-256 hex digest."""

    id: str  # type: ignore[assignment]
    account_id: str | None = None  # None: an admin key (all accounts)
    role: Role
    name: str = ""
    secret_sha256: str
    created_at: datetime
    created_ms: int  # page key of the key list
    created_by: str = ""
    revoked_ms: int | None = None
    revoked_by: str | None = None

    class Settings:
        name = "api_keys"
        indexes = [IndexModel([("account_id", pymongo.ASCENDING)]), IndexModel([("created_ms", pymongo.ASCENDING)])]


class AuditEntry(Document):
    """One state-changing request: who, what, when, on which account, and before/after where it applies.

    ``seq`` is a collection-wide integer sequence: the page key (an integer range, answered from its index).
    """

    seq: int
    at: datetime
    at_ms: int
    key_id: str
    role: str
    account_id: str | None  # the account acted on; None for an instance-wide action (admin key management)
    action: str  # e.g. "batch.pause", "job.retry", "key.create"
    method: str
    path: str
    target: str | None = None  # the id acted on (batch, job, key, do-not-call entry)
    status: int
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

    class Settings:
        name = "audit"
        indexes = [IndexModel([("seq", pymongo.ASCENDING)], unique=True),
                   IndexModel([("account_id", pymongo.ASCENDING)])]
