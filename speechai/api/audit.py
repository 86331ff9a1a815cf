"""The audit log: one document per state-changing request, inserted whole, and an ``audit`` log line.

Handlers describe what they did with :func:`note` (action, account, target, before/after); the middleware
writes the entry once the handler answered with a success, so a refused request leaves no entry in any
account (it is logged as ``audit`` with its status only). A route that notes nothing (an extra route) is
still recorded, as its method and path, under the key's own account.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web
from pymongo import ReturnDocument

from speechai.api.auth import Principal
from speechai.store.api_models import AuditEntry
from speechai.store.models import epoch_ms

log = structlog.get_logger("speechai.audit")
_SEQ_ID = "audit"


@dataclass
class Note:
    action: str
    account_id: str | None
    target: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    detail: dict[str, Any] = field(default_factory=dict)


NOTE_KEY: Any = web.RequestKey("speechai_audit", Note) if hasattr(web, "RequestKey") else "speechai_audit"


def note(request: web.Request, action: str, account_id: str | None, target: str | None = None, *,
         before: dict[str, Any] | None = None, after: dict[str, Any] | None = None, **detail: Any) -> None:
    request[NOTE_KEY] = Note(action, account_id, target, before, after, detail)


async def _next_seq() -> int:
    """The next collection-wide sequence number (a guarded ``$inc`` on one counter document)."""
    counters = AuditEntry.get_pymongo_collection().database["audit_seq"]
    row = await counters.find_one_and_update({"_id": _SEQ_ID}, {"$inc": {"n": 1}}, upsert=True,
                                             return_document=ReturnDocument.AFTER)
    return int(row["n"])


async def record(request: web.Request, who: Principal, status: int, now: datetime) -> None:
    found = request.get(NOTE_KEY)
    entry = found if isinstance(found, Note) else Note(f"{request.method} {request.path[:200]}", who.account_id)
    line = {"key_id": who.key_id, "role": who.role.value, "action": entry.action, "account_id": entry.account_id,
            "target": entry.target, "status": status, "method": request.method, "path": request.path[:300]}
    if status >= 400:
        log.info("audit", outcome="refused", **line)
        return
    seq = await _next_seq()
    await AuditEntry(seq=seq, at=now, at_ms=epoch_ms(now), key_id=who.key_id, role=who.role.value,
                     account_id=entry.account_id, action=entry.action, method=request.method,
                     path=request.path[:300], target=entry.target, status=status, before=entry.before,
                     after=entry.after, detail=entry.detail).insert()
    log.info("audit", outcome="done", seq=seq, before=entry.before, after=entry.after, **line)


async def record_command(action: str, command: str, now: datetime, *, account_id: str | None = None,
                         detail: dict[str, Any] | None = None, target: str | None = None,
                         after: dict[str, Any] | None = None) -> int:
    """An admin command's change (``speechai jobs reset --apply`` …), in the same log as the API's: who is
    the operating-system user that ran it, since the command needs no key."""
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or str(os.getuid())
    seq = await _next_seq()
    await AuditEntry(seq=seq, at=now, at_ms=epoch_ms(now), key_id=f"cli:{user}", role="admin",
                     account_id=account_id, action=action, method="CLI", path=command[:300], target=target,
                     status=0, after=after, detail=detail or {}).insert()
    log.info("audit", outcome="done", seq=seq, key_id=f"cli:{user}", action=action, account_id=account_id,
             target=target, path=command[:300])
    return seq
