"""Point reads for request handlers, against the real server: shared queries, never a stale answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from speechai.store.api_models import ApiKey, Role
from speechai.store.models import Account
from speechai.store.point_reads import PointReads


async def test_reads_asked_for_together_share_queries_and_each_gets_its_own_document(db) -> None:
    for i in range(5):
        await Account(id=f"a{i}", max_concurrent_calls=i + 1).insert()
    reads: PointReads[Account] = PointReads(Account)
    wanted = [f"a{i % 5}" for i in range(40)] + ["ghost"]
    got = await asyncio.gather(*(reads.get(a) for a in wanted))
    assert [None if a is None else (a.id, a.max_concurrent_calls) for a in got] == \
        [(f"a{i % 5}", i % 5 + 1) for i in range(40)] + [None]
    assert reads.queries < len(wanted) // 4  # one query a moment, not one per caller


async def test_a_read_asked_for_after_a_write_sees_it(db) -> None:
    key = ApiKey(id="k1", role=Role.ADMIN, secret_sha256="0" * 64, created_at=datetime.now(UTC), created_ms=1)
    await key.insert()
    reads: PointReads[ApiKey] = PointReads(ApiKey)
    assert (await reads.get("k1")).revoked_ms is None
    await ApiKey.get_pymongo_collection().update_one({"_id": "k1"}, {"$set": {"revoked_ms": 1}})
    # also while another read is under way: the later caller waits for a query of its own
    first = asyncio.ensure_future(reads.get("k1"))
    await asyncio.sleep(0)
    await ApiKey.get_pymongo_collection().update_one({"_id": "k1"}, {"$set": {"revoked_ms": 2}})
    second = await reads.get("k1")
    assert (await first).revoked_ms in (1, 2) and second.revoked_ms == 2
