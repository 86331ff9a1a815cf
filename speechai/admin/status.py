"""``speechai status``: instances and their generations, leases and calls in flight, concurrency grants,
batches and the last activity, read from the database (works for any instance sharing it)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from speechai.store.models import Batch, InstanceRecord, Job, JobState, Quota

IN_FLIGHT = JobState.IN_FLIGHT.value


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
        return {"instances": self.instances,
                "leases": {o: {"jobs": v.jobs, "expired": v.expired, "generations": sorted(v.generations),
                               "latest_until_ms": v.latest_until_ms} for o, v in self.leases.items()},
                "calls_in_flight": sum(v.jobs for v in self.leases.values()), "grants": self.grants,
                "batches": self.batches, "last_job_change_ms": self.last_job_change_ms}


async def read_status(now_ms: int) -> Status:
    instances = [{"id": d["_id"], "generation": d.get("generation", 0)}
                 async for d in InstanceRecord.get_pymongo_collection().find({}).sort("_id", 1)]
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
    out = ["instances (id, generation):"]
    out += [f"  {i['id']}  generation {i['generation']}" for i in s.instances] or ["  (none has started)"]
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
