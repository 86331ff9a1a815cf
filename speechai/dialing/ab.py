"""A/B agent splits: each person of a batch is assigned to one of 2–4 agents by weight, deterministically
(a hash of account and person key: the same arm across retries, restarts and instances), and a report
per arm with the difference in success rate and its 95 % confidence interval.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from speechai.store.models import AgentArm, Job

MIN_ARMS, MAX_ARMS = 2, 4
MAX_WEIGHT = 1_000_000  # a weight is relative: a larger one is a typo, and sums must stay exact
MIN_PEOPLE_PER_ARM = 30  # below this, a difference is "not significant yet"
Z95 = 1.959964


def check_split(arms: Sequence[AgentArm]) -> list[AgentArm]:
    if not arms:
        return []
    if not MIN_ARMS <= len(arms) <= MAX_ARMS:
        raise ValueError(f"agent_split has {len(arms)} arms; allowed {MIN_ARMS} to {MAX_ARMS}")
    ids = [a.agent_id for a in arms]
    if len(set(ids)) != len(ids) or not all(ids):
        raise ValueError(f"agent_split agent ids must be distinct and non-empty, got {ids}")
    bad = [a.weight for a in arms if not (0 < a.weight <= MAX_WEIGHT and math.isfinite(a.weight))]
    if bad:
        raise ValueError(f"agent_split weights must be positive numbers up to {MAX_WEIGHT}, got {bad}")
    return list(arms)


def unit_hash(account_id: str, person_key: str) -> float:
    """A uniform number in [0, 1) fixed by the person (not by the process: never Python's hash())."""
    digest = hashlib.sha256(f"{account_id}:{person_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_arm(account_id: str, person_key: str, arms: Sequence[AgentArm]) -> str:
    check_split(arms)
    point = unit_hash(account_id, person_key) * sum(a.weight for a in arms)
    for arm in arms:
        point -= arm.weight
        if point < 0:
            return arm.agent_id
    return arms[-1].agent_id


@dataclass(frozen=True)
class ArmStats:
    agent_id: str
    people: int
    attempts: int  # placed dials
    contacts: int  # people reached in a conversation
    successes: int  # people with a successful call
    cost_cents: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.people if self.people else 0.0

    @property
    def cost_per_success_cents(self) -> float | None:
        return self.cost_cents / self.successes if self.successes else None


@dataclass(frozen=True)
class Comparison:
    control: str
    variant: str
    difference: float  # variant success rate minus control's
    low: float  # 95 % confidence interval of the difference (Newcombe, from Wilson intervals)
    high: float
    verdict: str  # "not significant yet" | "no significant difference" | "<agent> better"


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_ci(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float, float]:
    """Newcombe's hybrid score interval for p2 - p1: (difference, low, high)."""
    p1, p2 = (s1 / n1 if n1 else 0.0), (s2 / n2 if n2 else 0.0)
    l1, u1 = wilson(s1, n1)
    l2, u2 = wilson(s2, n2)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return d, low, high


def arm_stats(jobs: Iterable[Job], arms: Sequence[str]) -> list[ArmStats]:
    """Per arm, in ``arms`` order: people, placed attempts, contacts, successes and cost."""
    acc = {a: [0, 0, 0, 0, 0.0] for a in arms}
    for job in jobs:
        row = acc.get(job.arm or "")
        if row is None:
            continue
        placed = [a for a in job.attempts if a.placed]
        row[0] += 1
        row[1] += len(placed)
        row[2] += any(a.outcome == "conversation" for a in placed)
        row[3] += any(a.success for a in placed)
        row[4] += sum(a.cost_cents or 0.0 for a in placed)
    return [ArmStats(a, int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4])) for a, r in acc.items()]


def compare(stats: Sequence[ArmStats], *, min_people: int = MIN_PEOPLE_PER_ARM) -> list[Comparison]:
    """Each arm against the first (the control): the difference in success rate with its 95 % CI."""
    if len(stats) < 2:
        return []
    control = stats[0]
    out = []
    for variant in stats[1:]:
        d, low, high = difference_ci(control.successes, control.people, variant.successes, variant.people)
        if min(control.people, variant.people) < min_people:
            verdict = "not significant yet"
        elif low > 0:
            verdict = f"{variant.agent_id} better"
        elif high < 0:
            verdict = f"{control.agent_id} better"
        else:
            verdict = "no significant difference"
        out.append(Comparison(control.agent_id, variant.agent_id, d, low, high, verdict))
    return out


async def batch_report(batch_id: str, arms: Sequence[str]) -> tuple[list[ArmStats], list[Comparison]]:
    jobs = await Job.find({"batch_id": batch_id}).to_list()
    stats = arm_stats(jobs, arms)
    return stats, compare(stats)
