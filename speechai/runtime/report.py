"""Campaign figures from the stored jobs: progress counts and the closing summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from speechai.store.models import Job, JobState


@dataclass
class CampaignSummary:
    jobs: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    not_placed: int = 0
    successes: int = 0
    retries: int = 0
    cost_cents: float = 0.0
    talk_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": dict(self.jobs), "outcomes": dict(self.outcomes), "calls": self.calls,
                "not_placed": self.not_placed, "successes": self.successes, "retries": self.retries,
                "cost_cents": round(self.cost_cents, 2), "talk_minutes": round(self.talk_ms / 60000, 1)}

    def render(self) -> str:
        jobs = ", ".join(f"{k} {v}" for k, v in sorted(self.jobs.items()))
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return "\n".join([
            f"people/jobs: {sum(self.jobs.values())} ({jobs})",
            f"calls placed: {self.calls} (not placed: {self.not_placed}); outcomes: {outcomes}",
            f"successes: {self.successes}; retries scheduled: {self.retries}",
            f"talk time: {self.talk_ms / 60000:.1f} min; cost: ${self.cost_cents / 100:.2f}",
        ])


async def summarize(batch_ids: list[str] | None = None) -> CampaignSummary:
    query: dict[str, Any] = {"batch_id": {"$in": batch_ids}} if batch_ids is not None else {}
    s = CampaignSummary()
    async for job in Job.find(query):
        s.jobs[job.state.value] += 1
        s.retries += sum(1 for t in job.history if t.to_state == JobState.RETRY)
        for a in job.attempts:
            if a.placed is False:
                s.not_placed += 1
                continue
            if not a.placed or a.outcome is None:
                continue
            s.calls += 1
            s.outcomes[a.outcome] += 1
            s.successes += bool(a.success)
            s.cost_cents += a.cost_cents or 0.0
            s.talk_ms += a.duration_ms or 0
    return s


def progress_line(s: CampaignSummary, now_text: str) -> str:
    j = s.jobs
    return (f"[{now_text}] pending {j['pending']} retry {j['retry_scheduled']} in-flight {j['in_flight']} "
            f"done {j['done']} failed {j['failed']} excluded {j['excluded']} | calls {s.calls} "
            f"success {s.successes} | ${s.cost_cents / 100:.2f}")
