"""The queries on hot paths are answered from an index (explain(), not timing): claims, the due-index
load and resync, lease takeover and re-adoption, heartbeat, the person and do-not-call reads.

The embedded server answers ranges and sorts from an index only on integer fields, `$in`/`$or` only
on `_id`, and a compound index only when every one of its fields is matched (DESIGN.md section 6);
these shapes are what the runtime sends. ObjectId parameters cannot be bound in the embedded server's
explain, so `_id $in` is pinned with string ids (the same plan).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from bson import ObjectId

from speechai.store.jobs import CLAIMABLE
from speechai.store.models import DoNotCall, Job

INDEXED = ("USING INDEX", "USING PRIMARY KEY", "IXSCAN", "IDHACK", "EXPRESS")

SHAPES: dict[str, tuple[type, dict[str, Any]]] = {
    "claim by id": (Job, {"_id": {"$in": ["a", "b"]}, "state": {"$in": CLAIMABLE}, "next_try_ms": {"$lte": 5}}),
    "read back a claim": (Job, {"_id": {"$in": ["a", "b"]}, "lease.claim": "token"}),
    "due index load": (Job, {"batch_id": "b1", "state": "pending"}),
    "due index resync": (Job, {"sync_ms": {"$gte": 1_700_000_000_000}}),
    "expired leases": (Job, {"lease.until_ms": {"$lt": 5}, "state": "in_flight"}),
    "re-adoption": (Job, {"lease.owner": "inst", "state": "in_flight", "lease.gen": {"$lt": 3}}),
    "heartbeat": (Job, {"_id": {"$in": ["a"]}, "state": "in_flight", "lease.owner": "inst", "lease.gen": 2}),
    "person history": (Job, {"person_key": "12345678-5", "account_id": "acme"}),
    "do-not-call": (DoNotCall, {"_id": {"$in": ["acme:12345678-5", "acme:+56912345678"]}}),
}


@pytest.mark.parametrize("name", list(SHAPES))
async def test_hot_query_uses_an_index(db, name: str) -> None:
    model, query = SHAPES[name]
    coll = model.get_pymongo_collection()
    # a few documents so the planner has a table to choose against
    await coll.insert_many([{"_id": ObjectId(), "state": "done", "batch_id": f"b{i}", "person_key": f"p{i}",
                             "account_id": "acme", "sync_ms": i, "next_try_ms": i} for i in range(50)])
    plan = json.dumps((await coll.find(query).explain()).get("queryPlanner", {}), default=str)
    assert any(mark in plan for mark in INDEXED), f"{name}: {plan[:400]}"
    assert "SCAN " + coll.name not in plan.replace("SCAN json_each", ""), f"{name} scans: {plan[:400]}"
