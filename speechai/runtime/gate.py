"""Per-person checks at dial time: the person's whole contact history in the account, read fresh."""

from __future__ import annotations

from datetime import datetime

from speechai.domain.caps import CapVerdict, ContactEvent, check_person_caps, policy_for
from speechai.domain.outcomes import OutcomeClass
from speechai.domain.settings import CallSettings
from speechai.store.models import DoNotCall, Job, JobState


async def is_do_not_call(job: Job) -> bool:
    keys = [job.person_key, *(p.number for p in job.phones)]
    if job.national_id:
        keys.append(job.national_id)
    return await DoNotCall.find({"account_id": job.account_id, "key": {"$in": keys}}).count() > 0


async def person_events(job: Job) -> tuple[list[ContactEvent], bool]:
    """Every placed attempt to this person in the account, and whether any succeeded."""
    events: list[ContactEvent] = []
    success = False
    async for other in Job.find({"account_id": job.account_id, "person_key": job.person_key}):
        success = success or other.state == JobState.DONE
        for a in other.attempts:
            if a.placed:
                events.append(ContactEvent(at=a.created_at, counted=a.counted,
                                           answered=a.outcome == OutcomeClass.CONVERSATION.value,
                                           success=bool(a.success)))
                success = success or bool(a.success)
    return events, success


async def gate_person(job: Job, settings: CallSettings, now: datetime) -> CapVerdict:
    events, has_success = await person_events(job)
    return check_person_caps(events, policy_for(settings), now=now, tz=settings.tz,
                             do_not_call=await is_do_not_call(job), has_success=has_success)
