"""What a job's segment changes at dial time: the call settings (the batch's with the segment's overrides)
and the dynamic variables (the job's with the segment's offer on top). The agent is chosen with the
from-number in ``dialing.hooks.prepare_attempt``. A change of a batch's rules re-segments its jobs
not yet dialed (``resegment``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import structlog

from speechai.domain.segments import SegmentRule, rule_named, settings_of
from speechai.domain.settings import CallSettings
from speechai.loader.segmenting import Segmenter
from speechai.store.models import Batch, Job, JobState, wall_ms

log = structlog.get_logger("speechai.segments")


def settings_for(batch: Batch, job: Job) -> CallSettings:
    """The job's effective call settings: its segment's overrides on the batch's, narrowed by the preset.

    Overrides were validated against the batch's settings when the rules were set; if a later change of
    the batch's settings makes them unfit, the batch's settings apply (logged), never an invalid mix."""
    rule = rule_named(batch.segments, job.segment)
    try:
        return settings_of(batch.call_settings, rule).effective()
    except ValueError as exc:  # pydantic's ValidationError included
        log.warning("segment_overrides_unfit", batch_id=batch.id, segment=job.segment, error=str(exc)[:300])
        return batch.call_settings.effective()


def variables_for(batch: Batch, job: Job) -> dict[str, str]:
    """The call's dynamic variables: the person's, then the segment's (discount, offer, deadline...)."""
    rule = rule_named(batch.segments, job.segment)
    return {**job.variables, **rule.variables} if rule is not None and rule.variables else job.variables


# --- re-segmentation -------------------------------------------------------------------------------

# Only jobs still waiting for their first placed call change segment: a person already talked to keeps
# the flow their calls were made under.
RESEGMENT_STATES = (JobState.PENDING, JobState.RETRY)
# whole attempts: projected as "attempts.placed" the embedded server returns no attempts field at all
_FIELDS = {"variables": 1, "segment": 1, "priority": 1, "version": 1, "state": 1, "attempts": 1}


@dataclass
class Resegmented:
    changed: int = 0  # jobs written with a new segment (or the same segment at a new priority)
    unchanged: int = 0  # not yet dialed, and their segment stays
    skipped: int = 0  # changed by someone else meanwhile (claimed for a dial): left as they are
    by_segment: Counter[str] = field(default_factory=Counter)  # not-yet-dialed jobs per segment, after

    def to_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "unchanged": self.unchanged, "skipped": self.skipped,
                "by_segment": dict(sorted(self.by_segment.items()))}


async def undialed_rows(batch_id: str) -> list[dict[str, Any]]:
    """The batch's jobs not yet dialed: waiting (one equality query per state on (batch_id, state))
    and without a placed attempt."""
    coll = Job.get_pymongo_collection()
    rows = []
    for state in RESEGMENT_STATES:
        async for row in coll.find({"batch_id": batch_id, "state": state.value}, _FIELDS):
            if not any(a.get("placed") is True for a in row.get("attempts") or []):
                rows.append(row)
    return rows


def seen_fields(rows: list[dict[str, Any]]) -> set[str]:
    return {k for row in rows for k in (row.get("variables") or {})}


async def resegment(batch: Batch, rules: list[SegmentRule], rows: list[dict[str, Any]]) -> Resegmented:
    """Give each not-yet-dialed job of ``rows`` the segment ``rules`` choose for it, by a replace
    conditional on the version read (and the state): a job claimed meanwhile is left alone."""
    segmenter = Segmenter(rules, batch.call_settings)
    coll = Job.get_pymongo_collection()
    out = Resegmented()
    for row in rows:
        new = segmenter(row.get("variables") or {})
        if new["segment"] is not None:
            out.by_segment[new["segment"]] += 1
        if row.get("segment") == new["segment"] and row.get("priority", 0) == new["priority"]:
            out.unchanged += 1
            continue
        doc = await coll.find_one({"_id": row["_id"], "version": row["version"], "state": row["state"]})
        if doc is None:
            out.skipped += 1
            continue
        doc.update(new, version=row["version"] + 1, sync_ms=wall_ms())  # sync_ms: other instances resync it
        result = await coll.replace_one({"_id": row["_id"], "version": row["version"], "state": row["state"]}, doc)
        if result.matched_count:
            out.changed += 1
        else:
            out.skipped += 1
    return out
