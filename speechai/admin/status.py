"""``speechai status``: instances and their generations, leases and calls in flight, concurrency grants,
batches and the last activity, read from the database (works for any instance sharing it).

Each instance's heartbeat records when it last beat, its lease TTL, the scheduler's last fill pass and
its calls in flight (``store.instances.record_beat``). An instance is *alive* while its last beat is at
most two lease TTLs old (it beats every third of one), *stale* after that (killed, hung, or cut off from
the database: its leases are expiring and another instance may adopt its jobs), *stopped* when it
recorded a clean stop, and *unknown* when it never recorded a beat (a version without the record)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from speechai.store.models import Batch, InstanceRecord, Job, JobState, Quota

IN_FLIGHT = JobState.IN_FLIGHT.value
STALE_TTLS = 2  # beats older than this many lease TTLs: the instance is stale
DEFAULT_TTL_MS = 30_000


def liveness(doc: dict[str, Any], now_ms: int) -> str:
    beat = doc.get("heartbeat_ms")
    if not isinstance(beat, int):
        return "unknown"
    if isinstance(doc.get("stopped_ms"), int) and doc["stopped_ms"] >= beat:
        return "stopped"
    ttl = doc.get("lease_ttl_ms") if isinstance(doc.get("lease_ttl_ms"), int) else DEFAULT_TTL_MS
    return "alive" if now_ms - beat <= STALE_TTLS * ttl else "stale"


def _instance(doc: dict[str, Any], now_ms: int) -> dict[str, Any]:
    return {"id": doc["_id"], "generation": doc.get("generation", 0), "state": liveness(doc, now_ms),
            "heartbeat_ms": doc.get("heartbeat_ms"), "lease_ttl_ms": doc.get("lease_ttl_ms"),
            "last_pass_ms": doc.get("last_pass_ms"), "in_flight": int(doc.get("in_flight") or 0),
            "pid": doc.get("pid"), "host": doc.get("host") or "", "started_ms": doc.get("started_ms"),
            "stopped_ms": doc.get("stopped_ms")}


@dataclass
class OwnerLeases:
    jobs: int = 0
    expired: int = 0
    generations: set[int] = field(default_factory=set)
    latest_until_ms: int = 0


@dataclass
class Status:
    now_ms: int
    instances: list[dict[str, Any]]
    leases: dict[str, OwnerLeases]
    grants: list[dict[str, Any]]
    batches: list[dict[str, Any]]
    last_job_change_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"now_ms": self.now_ms, "instances": self.instances,
                "leases": {o: {"jobs": v.jobs, "expired": v.expired, "generations": sorted(v.generations),
                               "latest_until_ms": v.latest_until_ms} for o, v in self.leases.items()},
                "calls_in_flight": sum(v.jobs for v in self.leases.values()), "grants": self.grants,
                "batches": self.batches, "last_job_change_ms": self.last_job_change_ms}


async def read_status(now_ms: int) -> Status:
    instances = [_instance(d, now_ms) async for d in InstanceRecord.get_pymongo_collection().find({}).sort("_id", 1)]
    batches = await Batch.get_pymongo_collection().find(
        {}, {"status": 1, "account_id": 1, "waiting_reason": 1, "status_reason": 1}).sort("_id", 1).to_list()
    leases: dict[str, OwnerLeases] = defaultdict(OwnerLeases)
    jobs = Job.get_pymongo_collection()
    for b in batches:
        # (batch_id, state) is matched in full: answered from its index
        async for raw in jobs.find({"batch_id": b["_id"], "state": IN_FLIGHT}, {"lease": 1}):
            lease = raw.get("lease") or {}
            held = leases[str(lease.get("owner", "(none)"))]
            held.jobs += 1
            until = int(lease.get("until_ms", 0))
            held.expired += until < now_ms
            held.generations.add(int(lease.get("gen", 0)))
            held.latest_until_ms = max(held.latest_until_ms, until)
    grants = []
    async for q in Quota.get_pymongo_collection().find({}).sort("_id", 1):
        for g in q.get("grants", []):
            grants.append({"scope": q["_id"], "owner": g["owner"], "slots": g["n"], "until_ms": g["until_ms"],
                           "live": g["until_ms"] >= now_ms})
    newest = await jobs.find({}, {"sync_ms": 1}).sort("sync_ms", -1).limit(1).to_list()  # sync_ms index
    return Status(now_ms=now_ms, instances=instances, leases=dict(leases), grants=grants,
                  batches=[{"id": b["_id"], "account": b.get("account_id"), "status": b.get("status"),
                            "waiting_reason": b.get("waiting_reason") or b.get("status_reason") or ""}
                           for b in batches],
                  last_job_change_ms=int(newest[0]["sync_ms"]) if newest else None)


def _ago(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "never"
    seconds = (now_ms - ms) / 1000
    when = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{when} ({seconds:.0f} s ago)" if seconds >= 0 else f"{when} (in {-seconds:.0f} s)"


def render_status(s: Status) -> str:
    out = ["instances (id, generation, state):"]
    for i in s.instances:
        where = f"pid {i['pid']} on {i['host']}" if i["pid"] else "pid unknown"
        out.append(f"  {i['id']}  generation {i['generation']}  {i['state'].upper()}  ({where})")
        if i["state"] == "unknown":
            continue
        out.append(f"    last heartbeat {_ago(i['heartbeat_ms'], s.now_ms)}; calls in flight {i['in_flight']}")
        out.append(f"    last scheduler pass {_ago(i['last_pass_ms'], s.now_ms)}"
                   + (f"; stopped {_ago(i['stopped_ms'], s.now_ms)}" if i["state"] == "stopped" else ""))
    if not s.instances:
        out.append("  (none has started)")
    in_flight = sum(v.jobs for v in s.leases.values())
    out.append(f"calls in flight: {in_flight}")
    for owner, v in sorted(s.leases.items()):
        gens = ",".join(map(str, sorted(v.generations)))
        out.append(f"  {owner}: {v.jobs} leased (generation {gens}), {v.expired} expired; "
                   f"latest lease until {_ago(v.latest_until_ms, s.now_ms)}")
    out.append("concurrency grants (scope, owner, slots, until):")
    out += [f"  {g['scope']}  {g['owner']}  {g['slots']}  {_ago(g['until_ms'], s.now_ms)}"
            f"{'' if g['live'] else '  EXPIRED'}" for g in s.grants] or ["  (none held)"]
    out.append("batches:")
    out += [f"  {b['id']} ({b['account']}): {b['status']}" + (f" — {b['waiting_reason']}" if b["waiting_reason"]
                                                               else "") for b in s.batches] or ["  (none)"]
    out.append(f"last job change: {_ago(s.last_job_change_ms, s.now_ms)}")
    return "\n".join(out)
