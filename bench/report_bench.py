"""Report benchmark: ``build_report`` and ``write_xlsx`` over a large campaign in the embedded database.

Seeds ``--jobs`` jobs with about ``--attempts`` attempts in total (a mix of outcomes like a collection
campaign's: conversations with promises to pay, voicemails, no answers, bad numbers, a few not placed)
directly into a fresh embedded nx-27017 server, then measures, in this process:

  build      ``build_report`` over every batch (the report's one streaming pass);
  xlsx       ``write_xlsx`` of that report to a file (openpyxl write-only mode);
  loop lag   the longest the event loop went without running a 10 ms ticker during ``build`` (what the
             rest of a runtime serving the report route would wait);
  peak RSS   max resident memory of this process (the server is another process, not counted).

    .venv/bin/python bench/report_bench.py [--jobs 30000] [--attempts 100000] [--batches 3] \\
        [--out /tmp/report-bench.json] [--dir /tmp/report-bench]

Prints and writes one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechai.reports.data import ReportFilter, build_report
from speechai.reports.xlsx import write_xlsx
from speechai.store.db import connect
from speechai.store.embedded import EmbeddedMongo

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OUTCOMES = [  # (outcome, disconnection reason, success, talk seconds, weight)
    ("conversation", "agent_hangup", True, 100, 2), ("conversation", "user_hangup", False, 50, 3),
    ("voicemail", "voicemail_reached", False, 20, 3), ("no_answer", "dial_no_answer", False, 0, 4),
    ("bad_number", "invalid_destination", False, 0, 1),
]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _attempt(rng: random.Random, phone: str, at: datetime, n: int) -> dict:
    if rng.random() < 0.02:
        return {"attempt_id": f"a{n}", "phone": phone, "created_at": at, "placed": False, "error": "capacity"}
    outcome, reason, success, talk, _ = rng.choices(OUTCOMES, weights=[o[4] for o in OUTCOMES])[0]
    collected = {"promised_amount": "150000", "promised_payment_date": "2026-03-20"} if success else {}
    return {"attempt_id": f"a{n}", "phone": phone, "created_at": at, "placed": True, "counted": True,
            "call_id": f"call_{n}", "placed_at": at, "call_status": "ended", "disconnection_reason": reason,
            "started_at": at, "ended_at": at + timedelta(seconds=talk), "duration_ms": talk * 1000,
            "cost_cents": round(talk * 0.1517, 4), "outcome": outcome, "success": success,
            "summary": "The customer was reached and the debt was discussed." if talk else None,
            "collected": collected, "from_number": "+56229000000", "agent_id": "agent_1"}


def jobs(n_jobs: int, n_attempts: int, n_batches: int, seed: int = 7) -> Iterator[dict]:
    """The jobs one by one (a generator: seeding keeps little in memory, so peak RSS is the report's)."""
    rng = random.Random(seed)
    per_job = n_attempts / n_jobs
    a = 0
    for i in range(n_jobs):
        phones = [f"+569{i:08d}", f"+569{i + 50_000_000:08d}"]
        k = max(1, min(6, round(rng.gauss(per_job, 1.0))))
        attempts = []
        for j in range(k):
            at = START + timedelta(days=j, minutes=rng.randrange(0, 9 * 60))
            attempts.append(_attempt(rng, phones[j % 2], at, a))
            a += 1
        last = attempts[-1]
        state = ("done" if last.get("success") else "failed" if k >= 5 else
                 rng.choice(["retry_scheduled", "pending", "failed", "excluded"]))
        yield ({"account_id": "acme", "batch_id": f"b{i % n_batches}", "dedup_key": f"b{i % n_batches}:{i}",
                    "person_key": f"acme:{i}", "name": f"Persona {i}", "national_id": None,
                    "phones": [{"number": p, "kind": "mobile", "bad": False, "attempts": 1} for p in phones],
                    "phone_index": 0, "variables": {"nombre": f"Persona {i}", "monto_deuda": "250000"},
                    "state": state, "version": k * 3, "next_try_at": START,
                    "next_try_ms": int(START.timestamp() * 1000),
                    "sync_ms": 0, "attempts": attempts, "attempts_counted": k, "lease": None, "history": [],
                    "last_reason": "conversation not successful" if state == "failed" else None,
                    "created_at": START, "updated_at": last["created_at"]})


async def seed(db, n_jobs: int, n_attempts: int, n_batches: int) -> int:
    await db.accounts.insert_one({"_id": "acme", "name": "Acme", "currency": "USD"})
    await db.batches.insert_many([{"_id": f"b{b}", "account_id": "acme", "name": f"batch {b}", "status": "active",
                                   "call_settings": {"timezone": "America/Santiago"}, "created_at": START}
                                  for b in range(n_batches)])
    total, chunk = 0, []
    for doc in jobs(n_jobs, n_attempts, n_batches):
        chunk.append(doc)
        total += len(doc["attempts"])
        if len(chunk) == 2000:
            await db.jobs.insert_many(chunk)
            chunk = []
    if chunk:
        await db.jobs.insert_many(chunk)
    await db.jobs.create_index([("batch_id", 1), ("state", 1)])  # what the runtime declares
    return total


async def lag_during(work) -> tuple[object, float]:
    """``work``'s result and the longest gap between two runs of a 10 ms ticker while it ran."""
    worst, done = 0.0, asyncio.Event()

    async def tick() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.01)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        result = await work
    finally:
        done.set()
        await ticker
    return result, worst


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=30_000)
    ap.add_argument("--attempts", type=int, default=100_000)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where the embedded server keeps its files")
    ap.add_argument("--out", type=Path, default=Path("/tmp/report-bench.json"))
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="report-bench-"))
    server = EmbeddedMongo(root)
    uri = server.start(timeout=60)
    try:
        client = await connect(uri, "bench")
        try:
            t0 = time.perf_counter()
            attempts = await seed(client["bench"], args.jobs, args.attempts, args.batches)
            seeded = time.perf_counter() - t0
            rss_before = _rss_mib()
            t0 = time.perf_counter()
            report, lag = await lag_during(build_report(ReportFilter(), datetime.now(UTC)))
            build_s = time.perf_counter() - t0
            rss_build = _rss_mib()
            t0 = time.perf_counter()
            target = root / "report.xlsx"
            write_xlsx(report, target)
            xlsx_s = time.perf_counter() - t0
        finally:
            await client.close()
    finally:
        server.stop()
    [totals] = report.section("totals").records()
    result = {"jobs": args.jobs, "attempts": attempts, "batches": args.batches, "seed_s": round(seeded, 2),
              "build_s": round(build_s, 2), "xlsx_s": round(xlsx_s, 2), "xlsx_bytes": target.stat().st_size,
              "max_loop_lag_ms": round(lag * 1000, 1), "rss_mib_after_seed": round(rss_before, 1),
              "peak_rss_mib_build": round(rss_build, 1), "peak_rss_mib": round(_rss_mib(), 1),
              "calls": totals["calls"], "promises": totals["promises"], "python": sys.version.split()[0],
              "at": datetime.now(UTC).isoformat(timespec="seconds")}
    text = json.dumps(result, indent=2)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
