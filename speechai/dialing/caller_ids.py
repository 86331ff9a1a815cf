"""Caller-ID pools: which from-number a call uses, per-number daily caps, resting flagged numbers, and
Chile's Subtel numbering rule for mass or automated calls.

Choice per call: a number local to the person (same US area code; same Chile region when known), else
the least used today; never one at its daily cap or rested today (the carrier marked it as spam or
blocked it). Usage is a guarded ``$inc`` per number and local day, so instances share the cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import phonenumbers
from pymongo.errors import DuplicateKeyError

from speechai.domain.caller_id_rules import (  # noqa: F401 (re-exported for the dial path)
    EXISTING_CUSTOMER_USES,
    MARKETING_USES,
    SOURCE,
    USE_CASES,
    Violation,
    batch_caller_id_violations,
    check_use_case,
    chile_prefix,
    chile_violations,
)
from speechai.store.accounts import take_daily
from speechai.store.models import CallerId, CallerIdRest, DailyCounter

UNCAPPED = 10**9  # usage is counted even without a cap: "least used today" needs it

# --- local presence ---------------------------------------------------------------------------------

# Chile's geographic area codes and the region (ISO 3166-2:CL) each serves.
CL_AREA_REGION: dict[str, str] = {
    "2": "RM", "32": "VS", "33": "VS", "34": "VS", "35": "VS", "41": "BI", "43": "BI", "42": "NB", "45": "AR",
    "51": "CO", "53": "CO", "52": "AT", "55": "AN", "57": "TA", "58": "AP", "61": "MA", "63": "LR", "64": "LL",
    "65": "LL", "67": "AI", "71": "ML", "73": "ML", "75": "ML", "72": "LI",
}
CL_REGIONS = frozenset(CL_AREA_REGION.values())


def local_key(number: str) -> str | None:
    """Where a number is local: a US/Canada area code ("415"), a Chile region ("RM"), else None."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return None
    national = str(parsed.national_number)
    if parsed.country_code == 1 and len(national) == 10:
        return national[:3]
    if parsed.country_code == 56:
        for digits in (2, 1):
            if (region := CL_AREA_REGION.get(national[:digits])) is not None and len(national) == 9:
                return region
    return None


def person_keys(phones: Iterable[str], region: str | None = None) -> set[str]:
    """Everywhere a person is local: the region given for them (a Chile region code) and their phones'."""
    keys = {k for k in map(local_key, phones) if k is not None}
    if region and region.strip().upper() in CL_REGIONS:
        keys.add(region.strip().upper())
    return keys


def pool_key(entry: CallerId) -> str | None:
    return entry.region.strip().upper() if entry.region else local_key(entry.number)


def candidates(pool: Sequence[CallerId], *, usage: dict[str, int], rested: set[str], cap: int | None,
               local: set[str]) -> list[str]:
    """Pool numbers in the order to try: local ones first, then by least used today (pool order breaks
    ties); none rested today or at its daily cap."""
    usable = [(i, e) for i, e in enumerate(pool)
              if e.number not in rested and (cap is None or usage.get(e.number, 0) < cap)]
    usable.sort(key=lambda ie: (pool_key(ie[1]) not in local, usage.get(ie[1].number, 0), ie[0]))
    return list(dict.fromkeys(e.number for _, e in usable))


# --- store --------------------------------------------------------------------------------------------


def usage_key(account_id: str, number: str, day: str) -> str:
    return f"callerid:{account_id}:{number}:{day}"


def rest_id(account_id: str, number: str, day: str) -> str:
    return f"{account_id}:{number}:{day}"


async def usage_today(account_id: str, numbers: Sequence[str], day: str) -> dict[str, int]:
    keys = {usage_key(account_id, n, day): n for n in numbers}
    return {keys[raw["_id"]]: int(raw.get("n", 0))
            async for raw in DailyCounter.get_pymongo_collection().find({"_id": {"$in": list(keys)}})}


async def rested_today(account_id: str, numbers: Sequence[str], day: str) -> set[str]:
    ids = {rest_id(account_id, n, day): n for n in numbers}
    return {ids[raw["_id"]]
            async for raw in CallerIdRest.get_pymongo_collection().find({"_id": {"$in": list(ids)}}, {"_id": 1})}


@dataclass(frozen=True)
class Choice:
    number: str
    key: str  # the daily usage counter taken; given back if the dial never happens


async def choose(account_id: str, pool: Sequence[CallerId], *, day: str, cap: int | None,
                 local: set[str]) -> Choice | None:
    """Take today's use of the best number of the pool; None when every number is rested or capped."""
    numbers = [e.number for e in pool]
    usage = await usage_today(account_id, numbers, day)
    rested = await rested_today(account_id, numbers, day)
    for number in candidates(pool, usage=usage, rested=rested, cap=cap, local=local):
        key = usage_key(account_id, number, day)
        if await take_daily(key, cap if cap is not None else UNCAPPED):
            return Choice(number, key)
    return None


async def rest(account_id: str, number: str, day: str, reason: str) -> bool:
    """Rest ``number`` for the rest of ``day``; True the first time it is rested that day."""
    try:
        await CallerIdRest(id=rest_id(account_id, number, day), account_id=account_id, number=number, day=day,
                           reason=reason).insert()
        return True
    except DuplicateKeyError:
        await CallerIdRest.get_pymongo_collection().update_one({"_id": rest_id(account_id, number, day)},
                                                               {"$inc": {"refusals": 1}})
        return False


async def rested_on(account_id: str, day: str) -> list[CallerIdRest]:
    """The report: numbers rested on ``day`` and why."""
    return await CallerIdRest.find({"account_id": account_id, "day": day}).to_list()
