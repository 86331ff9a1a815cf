"""CRM registration benchmark: the time to record one call as an opportunity attempt (the built-in CRM
subscriber's handler, ``speechai.integrations.crm.register_call``), on the embedded nx-27017 server as a
separate process, through the real driver.

    .venv/bin/python bench/crm_bench.py [--contacts 2000] [--calls 2000]

Each contact has three opportunities (one closed, two active: the newest is chosen); every call is
registered twice, as ``call.created`` then ``call.finished``, like a campaign's calls. Prints p50/p99/max
per registration in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from beanie import init_beanie
from pymongo import AsyncMongoClient

from speechai.integrations.crm import register_call
from speechai.store.embedded import EmbeddedMongo
from speechai.store.models import DOCUMENT_MODELS
from speechai.store.outbox_models import Contact, Opportunity, contact_id


def event(kind: str, n: int, key: str, outcome: str) -> dict:
    return {"_id": f"att{n}:{kind}", "type": kind, "account_id": "acme", "at_ms": 1_767_000_000_000 + n,
            "data": {"person_key": key, "attempt": {"attempt_id": f"att{n}", "call_id": f"call_{n}",
                                                     "outcome": outcome, "disconnection_reason": "user_hangup"}}}


async def run(contacts: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedMongo(Path(tmp)) as mongo:
        client = AsyncMongoClient(mongo.uri, tz_aware=True)
        await init_beanie(database=client["crm_bench"], document_models=DOCUMENT_MODELS)
        keys = [f"+5696{n:07d}" for n in range(contacts)]
        await Contact.insert_many([Contact(id=contact_id("acme", k), account_id="acme", key=k, created_ms=0)
                                   for k in keys])
        await Opportunity.insert_many([Opportunity(id=f"opp{n}-{i}", account_id="acme",
                                                   contact_id=contact_id("acme", k), created_ms=i,
                                                   status="won" if i == 0 else "pending")
                                       for n, k in enumerate(keys) for i in range(3)])
        rng = random.Random(1)
        times: list[float] = []
        for n in range(calls):
            key = rng.choice(keys)
            for kind, outcome in (("call.created", None), ("call.finished", rng.choice(["no_answer", "conversation"]))):
                started = time.perf_counter()
                await register_call(event(kind, n, key, outcome))
                times.append((time.perf_counter() - started) * 1000)
        times.sort()
        print(f"registrations {len(times)}: p50 {statistics.median(times):.2f} ms, "
              f"p99 {times[int(len(times) * 0.99) - 1]:.2f} ms, max {times[-1]:.2f} ms")
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.contacts, args.calls))


if __name__ == "__main__":
    main()
