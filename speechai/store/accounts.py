"""Account money and daily limits: every change is one guarded ``$inc``, so instances never overspend."""

from __future__ import annotations

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from actors.batcher import Batcher
from speechai.store.models import Account, DailyCounter, Plan


async def reserve(account_id: str, plan: Plan, cents: int, ms: int) -> bool:
    """Move the worst-case cost from the balance to the reservation; False when the balance is short."""
    if plan == Plan.UNLIMITED or (cents == 0 and ms == 0):
        return True
    field, amount, held = (("balance_cents", cents, "reserved_cents") if plan == Plan.CREDITS
                           else ("minutes_balance_ms", ms, "reserved_ms"))
    result = await Account.get_pymongo_collection().update_one(
        {"_id": account_id, field: {"$gte": amount}}, {"$inc": {field: -amount, held: amount}})
    return result.modified_count == 1


async def _apply_incs(ops: list[tuple[str, dict[str, int]]]) -> list[None]:
    coll = Account.get_pymongo_collection()
    if len(ops) == 1:
        await coll.update_one({"_id": ops[0][0]}, {"$inc": ops[0][1]})
    else:
        await coll.bulk_write([UpdateOne({"_id": a}, {"$inc": inc}) for a, inc in ops], ordered=False)
    return [None] * len(ops)


# After the call's line is free: calls ending within 50 ms settle in one bulk write (longer waits shift
# when results land in business time, which a compressed clock and the breaker's window feel).
_settlements: Batcher[tuple[str, dict[str, int]], None] = Batcher(_apply_incs, window_s=0.05)


async def settle(account_id: str, *, reserved_cents: int, reserved_ms: int, delta_cents: int, delta_ms: int,
                 cost_cents: float) -> None:
    """Release the reservation, refund what the call did not use, and add the real cost to spending.
    Settlements of one moment go out as one bulk write (each an unconditional ``$inc``)."""
    await _settlements.submit((account_id, {
        "reserved_cents": -reserved_cents, "reserved_ms": -reserved_ms, "balance_cents": delta_cents,
        "minutes_balance_ms": delta_ms, "spent_cents": round(cost_cents)}))


async def top_up(account_id: str, *, cents: int = 0, ms: int = 0) -> bool:
    """Add credit and lift an out-of-credit suspension; the scheduler resumes the suspended jobs."""
    result = await Account.get_pymongo_collection().update_one(
        {"_id": account_id},
        {"$inc": {"balance_cents": cents, "minutes_balance_ms": ms}, "$set": {"suspended_reason": None}})
    return result.matched_count == 1


async def take_daily(key: str, limit: int) -> bool:
    """Count one against ``key`` (e.g. "account:acme:2026-03-02") if it is still under ``limit``."""
    try:
        await DailyCounter(id=key, n=0).insert()
    except DuplicateKeyError:
        pass
    result = await DailyCounter.get_pymongo_collection().update_one(
        {"_id": key, "n": {"$lt": limit}}, {"$inc": {"n": 1}})
    return result.modified_count == 1


async def give_back_daily(key: str) -> None:
    await DailyCounter.get_pymongo_collection().update_one({"_id": key, "n": {"$gt": 0}}, {"$inc": {"n": -1}})


async def configure(account_id: str, *, max_concurrent_calls: int, daily_call_limit: int | None) -> None:
    """Set an account's limits, creating the account if it does not exist yet (integers only: safe to $set)."""
    await Account.get_pymongo_collection().update_one(
        {"_id": account_id},
        {"$set": {"max_concurrent_calls": max_concurrent_calls, "daily_call_limit": daily_call_limit},
         "$setOnInsert": Account(id=account_id).model_dump(by_alias=True, exclude={"id", "revision_id",
                                                                                   "max_concurrent_calls",
                                                                                   "daily_call_limit"})},
        upsert=True)
