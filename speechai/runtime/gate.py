"""Checks at dial time: the person's contact history and do-not-call entries, read fresh; then the
account's daily limit, the batch's daily quota and the credit reservation, taken atomically."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from actors.batcher import Batcher
from speechai.domain.caps import CapVerdict, ContactEvent, check_person_caps, policy_for
from speechai.domain.credits import estimate_reservation
from speechai.domain.outcomes import OutcomeClass
from speechai.domain.settings import CallSettings
from speechai.domain.windows import local_date, next_local_midnight
from speechai.store.accounts import give_back_daily, reserve, take_daily
from speechai.store.agent_models import AgentUser, HumanCall, HumanCallStatus
from speechai.store.models import Account, DoNotCall, Job, JobState, Plan, dnc_id


async def _listed(items: list[tuple[str, tuple[str, ...]]]) -> list[bool]:
    """For each (account, keys): whether any key is on the account's do-not-call list; one ``_id $in``
    read for every dial of the moment."""
    ids = sorted({dnc_id(account_id, k) for account_id, keys in items for k in keys})
    found = {raw["_id"] async for raw in DoNotCall.get_pymongo_collection().find({"_id": {"$in": ids}}, {"_id": 1})}
    return [any(dnc_id(account_id, k) in found for k in keys) for account_id, keys in items]


_dnc_reads: Batcher[tuple[str, tuple[str, ...]], bool] = Batcher(_listed)


async def is_do_not_call(job: Job) -> bool:
    keys = [job.person_key, *(p.number for p in job.phones)]
    if job.national_id:
        keys.append(job.national_id)
    return await _dnc_reads.submit((job.account_id, tuple(keys)))


@dataclass(frozen=True)
class PersonView:
    """The person's placed attempts across the account, whether any succeeded, and whether another of
    their jobs is in flight right now."""

    events: list[ContactEvent]
    has_success: bool
    busy: bool


# A human agent's call still "in progress" after this long was never ended: it stops keeping the person busy
# (it still counts as an attempt).
HUMAN_CALL_MAX_S = 4 * 3600


async def person_view(job: Job, now: datetime | None = None) -> PersonView:
    """One read of every job of this person in the account, and one of their calls by human agents.
    ``now`` (business time): an agent's call left in progress longer than ``HUMAN_CALL_MAX_S`` before it
    no longer makes the person busy.

    It also keeps one call at a time per person: every job is marked in flight by its claim before its
    actor reads this, so of two jobs of one person claimed at once, at least one sees the other and
    waits; neither dials while the other's call is live."""
    events: list[ContactEvent] = []
    success = busy = False
    # one equality read: the embedded server answers `$in` and `$or` on this field with a scan
    async for other in Job.find({"person_key": job.person_key, "account_id": job.account_id}):
        success = success or other.state == JobState.DONE
        busy = busy or (other.id != job.id and other.state == JobState.IN_FLIGHT)
        for a in other.attempts:
            if a.placed:
                # the dial happened no later than create-call's answer: a rolling window counted from
                # there never lets the next dial come early
                events.append(ContactEvent(at=a.placed_at or a.created_at, counted=a.counted,
                                           answered=a.outcome == OutcomeClass.CONVERSATION.value,
                                           success=bool(a.success)))
                success = success or bool(a.success)
    # calls by human agents count as the campaign's own: every one started is a contact attempt
    if await _has_agents(job.account_id):
        async for call in HumanCall.find({"person_key": job.person_key, "account_id": job.account_id}):
            events.append(human_event(call))
            success = success or call.resolved
            busy = busy or (call.status == HumanCallStatus.IN_PROGRESS and (
                now is None or (now - call.started_at).total_seconds() < HUMAN_CALL_MAX_S))
    return PersonView(events, success, busy)


AGENTS_TTL_S = 5.0
_agents_seen: dict[str, tuple[float, bool]] = {}


def forget_agents(account_id: str) -> None:
    _agents_seen.pop(account_id, None)


async def _has_agents(account_id: str) -> bool:
    """Whether the account has human agents (only they make human calls), re-read every few seconds: an
    account without agents costs no read per dial."""
    hit = _agents_seen.get(account_id)
    if hit is not None and time.monotonic() - hit[0] < AGENTS_TTL_S:
        return hit[1]
    if hit is not None:  # one refresh at a time: the dials meanwhile use the answer a few seconds old
        _agents_seen[account_id] = (time.monotonic(), hit[1])
    found = await AgentUser.get_pymongo_collection().find_one({"account_id": account_id}, {"_id": 1}) is not None
    _agents_seen[account_id] = (time.monotonic(), found)
    return found


def human_event(call: HumanCall) -> ContactEvent:
    return ContactEvent(at=call.started_at, counted=True, answered=call.status == HumanCallStatus.COMPLETED,
                        success=call.resolved)


async def gate_person(job: Job, settings: CallSettings, now: datetime, view: PersonView | None = None) -> CapVerdict:
    view = view or await person_view(job, now)
    return check_person_caps(view.events, policy_for(settings), now=now, tz=settings.tz,
                             do_not_call=await is_do_not_call(job), has_success=view.has_success)


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
