"""Provider concurrency shared by instances, held as leased blocks instead of a document per call.

A scope (``account:<id>``) is one document listing each instance's grant ``{owner, n, want, until_ms}``
(``want`` above ``n``: the instance is waiting for slots, and the others hold back to a fair share).
An instance asks for a block when its grant runs out, renews it on its heartbeat and shrinks it when
idle; calls take and free slots of the grant in memory. Every change is a replace conditional on the
document's integer version, so two instances never hold more than the limit between them; a dead
instance's grant simply expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.errors import DuplicateKeyError

from speechai.store.models import Quota

CONFLICT_RETRIES = 8


def _live(doc: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:
    return [g for g in doc.get("grants", []) if g["until_ms"] >= now_ms]


@dataclass(frozen=True)
class Grant:
    n: int  # slots granted
    contended: bool  # another instance is waiting for slots


async def set_grant(scope: str, owner: str, *, want: int, keep: int, limit: int, until_ms: int,
                    now_ms: int) -> Grant:
    """Set ``owner``'s grant to ``want`` slots, or as many as the limit leaves free but never below
    ``keep`` (slots its calls already use: those calls exist whatever the limit says)."""
    coll = Quota.get_pymongo_collection()
    for _ in range(CONFLICT_RETRIES):
        doc = await coll.find_one({"_id": scope})
        if doc is None:
            try:
                await coll.insert_one({"_id": scope, "version": 0, "grants": []})
            except DuplicateKeyError:
                pass
            continue
        others = [g for g in _live(doc, now_ms) if g["owner"] != owner]
        free = max(0, limit - sum(g["n"] for g in others))
        # While another instance waits for slots, nobody grows past a fair share: otherwise the instance
        # whose calls end first takes every freed slot back at once and the others starve.
        waiting = sum(1 for g in others if g.get("want", 0) > g["n"])
        fair = -(-limit // (waiting + 1)) if waiting else limit
        n = max(keep, min(want, free, fair))
        mine = {"owner": owner, "n": n, "want": want, "until_ms": until_ms}
        grants = others + ([mine] if n > 0 or want > n else [])
        result = await coll.replace_one({"_id": scope, "version": doc["version"]},
                                        {"version": doc["version"] + 1, "grants": grants})
        if result.matched_count == 1:
            return Grant(n, waiting > 0)
    return Grant(keep, True)  # contended: keep what we have and ask again on the next need


async def drop_grants(owner: str) -> None:
    """On shutdown: hand every slot back at once instead of letting the grants expire."""
    coll = Quota.get_pymongo_collection()
    async for doc in coll.find({"grants.owner": owner}, {"_id": 1}):
        for _ in range(CONFLICT_RETRIES):
            current = await coll.find_one({"_id": doc["_id"]})
            if current is None:
                break
            grants = [g for g in current["grants"] if g["owner"] != owner]
            result = await coll.replace_one({"_id": doc["_id"], "version": current["version"]},
                                            {"version": current["version"] + 1, "grants": grants})
            if result.matched_count == 1:
                break


async def held(scope: str, now_ms: int) -> int:
    """Slots granted to live instances in ``scope``."""
    doc = await Quota.get_pymongo_collection().find_one({"_id": scope})
    return 0 if doc is None else sum(g["n"] for g in _live(doc, now_ms))
