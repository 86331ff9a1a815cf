"""Checks at dial time: the person's contact history and do-not-call entries, read fresh; then the
account's daily limit, the batch's daily quota and the credit reservation, taken atomically."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from speechai.domain.caps import CapVerdict, ContactEvent, check_person_caps, policy_for
from speechai.domain.credits import estimate_reservation
from speechai.domain.outcomes import OutcomeClass
from speechai.domain.settings import CallSettings
from speechai.domain.windows import local_date, next_local_midnight
from speechai.store.accounts import give_back_daily, reserve, take_daily
from speechai.store.models import Account, DoNotCall, Job, JobState, Plan


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


@dataclass(frozen=True)
class Admission:
    """What a dial holds until it is settled: credit reserved and daily counters consumed."""

    reserved_cents: int = 0
    reserved_ms: int = 0
    daily_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    state: JobState
    reason: str
    retry_at: datetime | None = None
    suspend_account: str | None = None


async def admit(job: Job, settings: CallSettings, account: Account | None, now: datetime, *,
                cents_per_minute: int) -> Admission | Refusal:
    """Take the account's daily call, the batch's daily quota and the credit for one dial, all or none."""
    day = local_date(settings, now)
    midnight = next_local_midnight(settings.tz, now)
    taken: list[str] = []

    async def refuse(refusal: Refusal) -> Refusal:
        for key in taken:
            await give_back_daily(key)
        return refusal

    if account is not None and account.daily_call_limit is not None:
        key = f"account:{account.id}:{day.isoformat()}"
        if not await take_daily(key, account.daily_call_limit):
            return await refuse(Refusal(JobState.RETRY, f"account daily call limit ({account.daily_call_limit}) "
                                                        "reached", midnight))
        taken.append(key)
    dialed_today = any(a.placed is not False and local_date(settings, a.created_at) == day for a in job.attempts)
    if settings.daily_quota is not None and not dialed_today:
        key = f"batch:{job.batch_id}:{day.isoformat()}"
        if not await take_daily(key, settings.daily_quota):
            return await refuse(Refusal(JobState.RETRY, f"batch daily quota ({settings.daily_quota} people) "
                                                        "reached", midnight))
        taken.append(key)
    plan = account.plan if account is not None else Plan.UNLIMITED
    cents, ms = estimate_reservation(plan.value, settings, cents_per_minute=cents_per_minute)
    if not await reserve(job.account_id, plan, cents, ms):
        need = f"{cents} cents" if plan == Plan.CREDITS else f"{ms // 60000} minutes"
        return await refuse(Refusal(JobState.SUSPENDED, f"out of credit: a call needs {need} reserved",
                                    suspend_account="out of credit"))
    return Admission(cents, ms, tuple(taken))


async def add_do_not_call(job: Job, reason: str, now: datetime) -> None:
    """The person asked not to be called again: every key that identifies them goes on the list."""
    for key in dict.fromkeys([job.person_key, *(p.number for p in job.phones)]):
        try:
            await DoNotCall(account_id=job.account_id, key=key, reason=reason, added_at=now).insert()
        except DuplicateKeyError:
            pass
