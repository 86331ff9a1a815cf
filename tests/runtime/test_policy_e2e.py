"""The campaign policy end to end: the real runtime, the embedded MongoDB server and the Retell
simulator over HTTP on a fast simulated clock; the simulator's dial log is then checked against the
rules by an independent checker written here from the documented policy (docs/policy.md), not from
the runtime's own functions (only the ``holidays`` calendar and ``zoneinfo`` are shared).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import anyio
import holidays
import pytest

from actors.clock import SimClock
from speechai.domain.presets import Preset
from speechai.domain.settings import CallSettings, HourRange, RetryDelays
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import (
    Account,
    Batch,
    BatchStatus,
    DoNotCall,
    Job,
    JobState,
    Lease,
    Phone,
    Plan,
)
from tests.runtime.harness import API_KEY, Instance, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
TOKEN = "policy-test-token"
FINAL = {JobState.DONE, JobState.FAILED, JobState.EXCLUDED, JobState.CANCELLED}
# At 600 business seconds per real second, a few milliseconds of I/O between the decision to dial and
# the provider receiving create-call become business seconds: a decision taken just before a window
# closed may land just after it, and the provider hears of a send this long after it left.
GRACE = timedelta(seconds=90)

# --- the rules as documented (independent of the runtime's code) -----------------------------------

BAD_NUMBER_REASONS = {"invalid_destination", "dial_failed", "telephony_provider_permission_denied",
                      "marked_as_spam", "network_blocked"}  # not counted against the person
TALK_REASONS = {"user_hangup", "agent_hangup", "max_duration_reached", "user_requested_dnc", "inactivity",
                "call_transfer", "manual_stopped"}
PRESETS: dict[str, dict[str, Any]] = {
    # Ley 19.496 art. 37 (Ley 21.320): Mon–Sat 08–20, no CL holidays, one call per rolling 7 days.
    "chile": {"hours": (time(8), time(20)), "days": {1, 2, 3, 4, 5, 6}, "holidays": "CL", "window": (7, 1)},
    # 12 CFR 1006.6(b)(1) 08–21 local; 1006.14(b)(2) 7 calls in 7 days, none 7 days after a conversation.
    "us_reg_f": {"hours": (time(8), time(21)), "window": (7, 7), "quiet": 7},
    "none": {},
}


@dataclass(frozen=True)
class Rules:
    """What one batch promises, per the docs: its settings narrowed by its preset."""

    tz: ZoneInfo
    hours: tuple[tuple[time, time], ...]
    days: frozenset[int]
    holiday_countries: frozenset[str]
    closed: frozenset[date]
    per_day: int | None
    no_answer_days: int | None
    windows: tuple[tuple[int, int], ...]  # (days, max calls) pairs, each must hold
    quiet_days: int | None
    max_attempts: int
    daily_quota: int | None

    @classmethod
    def of(cls, s: CallSettings) -> Rules:
        p = PRESETS[s.preset.value]
        hours = [(r.start, r.end) for r in s.allowed_hours]
        if "hours" in p:
            lo, hi = p["hours"]
            hours = [(max(a, lo), min(b, hi)) for a, b in hours if max(a, lo) < min(b, hi)]
        days = set(s.days_of_week) & p.get("days", set(range(1, 8)))
        countries = {c for c in (s.holidays_country, *s.extra_holiday_countries, p.get("holidays")) if c}
        pp = s.person_policy
        windows = [w for w in ((pp.rolling_window_days, pp.max_calls_in_window), p.get("window")) if w and w[0]]
        quiet = max(filter(None, (pp.quiet_days_after_conversation, p.get("quiet"))), default=None)
        return cls(tz=ZoneInfo(s.timezone), hours=tuple(hours), days=frozenset(days),
                   holiday_countries=frozenset(countries), closed=frozenset(s.closed_dates),
                   per_day=pp.max_calls_per_day, no_answer_days=pp.max_no_answer_days,
                   windows=tuple(windows), quiet_days=quiet, max_attempts=s.max_attempts,
                   daily_quota=s.daily_quota)

    def open_at(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        d = local.date()
        if d.isoweekday() not in self.days or d in self.closed:
            return False
        if any(d in holidays.country_holidays(c, years=d.year) for c in self.holiday_countries):
            return False
        return any(a <= local.time() < b for a, b in self.hours)

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()


@dataclass(frozen=True)
class Dial:
    """One call the simulator placed, joined with the job that asked for it."""

    at: datetime  # the simulator received create-call
    decided: datetime  # the attempt was written, right after the dial-time checks
    end: datetime
    phone: str
    job_id: str
    batch_id: str
    account_id: str
    person: tuple[str, str]  # (account, person key)
    counted: bool  # reached a working line (a bad number reaches no one)
    talked: bool  # a human conversation
    success: bool
    dnc: bool  # the person asked not to be called again
    cost_cents: float


def _ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=ZoneInfo("UTC"))


def collect_dials(sim: RetellSimulator, jobs: Iterable[Job]) -> list[Dial]:
    by_id = {str(j.id): j for j in jobs}
    calls = sim.calls
    out = []
    for d in sim.dials:
        job = by_id[d.metadata["job_id"]]
        attempt = next(a for a in job.attempts if a.attempt_id == d.metadata["attempt_id"])
        call = calls[d.call_id]
        reason = call.get("disconnection_reason") or ""
        analysis = call.get("call_analysis") or {}
        talked = call["call_status"] == "ended" and reason in TALK_REASONS and not analysis.get("in_voicemail")
        out.append(Dial(at=d.at, decided=attempt.created_at, end=_ms(call["end_timestamp"]), phone=d.to_number,
                        job_id=str(job.id), batch_id=job.batch_id, account_id=job.account_id,
                        person=(job.account_id, job.person_key), counted=reason not in BAD_NUMBER_REASONS,
                        talked=talked, success=talked and analysis.get("call_successful") is True,
                        dnc=reason == "user_requested_dnc",
                        cost_cents=float((call.get("call_cost") or {}).get("combined_cost") or 0.0)))
    return sorted(out, key=lambda x: x.decided)


def violations(dials: Sequence[Dial], rules_of: Callable[[Dial], Rules], *, daily_limits: dict[str, int | None],
               do_not_call: dict[str, set[str]], person_phones: dict[tuple[str, str], set[str]]) -> list[str]:
    """Every way the dial log breaks the documented policy (empty when it keeps it)."""
    bad: list[str] = []
    by_person: dict[tuple[str, str], list[Dial]] = defaultdict(list)
    for d in dials:
        r = rules_of(d)
        where = f"{d.phone} of {d.batch_id} at {d.at.astimezone(r.tz):%a %Y-%m-%d %H:%M:%S}"
        # Rules are judged at the decision (the attempt written ahead); the window is checked again
        # right before the send, so the dial reaches the provider inside it, give or take transit.
        if not (r.open_at(d.at) or r.open_at(d.at - GRACE)):
            bad.append(f"{where}: sent {d.at - d.decided} after the decision, outside the window")
        if not (r.open_at(d.decided) or r.open_at(d.decided - GRACE)):
            bad.append(f"{where}: outside the batch's window")
        keys = {d.person[1], *person_phones.get(d.person, set())}
        if keys & do_not_call.get(d.account_id, set()):
            bad.append(f"{where}: person on the do-not-call list")
        prior = [p for p in by_person[d.person] if p.decided < d.decided]
        if any(p.success for p in prior):
            bad.append(f"{where}: person already reached with success")
        if any(p.dnc for p in prior):
            bad.append(f"{where}: person asked not to be called again")
        if any(p.end > d.at for p in prior):
            bad.append(f"{where}: person already on another call")
        counted = [p for p in prior if p.counted]
        today = r.local_day(d.decided)
        if r.per_day is not None and sum(r.local_day(p.decided) == today for p in counted) >= r.per_day:
            bad.append(f"{where}: more than {r.per_day} calls in a local day")
        for days, most in r.windows:
            if sum(p.decided > d.decided - timedelta(days=days) for p in counted) >= most:
                bad.append(f"{where}: more than {most} calls in {days} rolling days")
        if r.quiet_days is not None and any(p.talked and p.decided > d.decided - timedelta(days=r.quiet_days)
                                            for p in prior):
            bad.append(f"{where}: within {r.quiet_days} days after a conversation")
        if r.no_answer_days is not None:
            since = max((p.decided for p in prior if p.talked), default=None)
            silent = {r.local_day(p.decided) for p in counted
                      if not p.talked and (since is None or p.decided > since)}
            if len(silent) >= r.no_answer_days:
                bad.append(f"{where}: already called on {len(silent)} days without an answer")
        by_person[d.person].append(d)
    per_job: dict[str, int] = defaultdict(int)
    per_account_day: dict[tuple[str, date], int] = defaultdict(int)
    per_batch_day: dict[tuple[str, date], set[str]] = defaultdict(set)
    for d in dials:
        r = rules_of(d)
        per_job[d.job_id] += d.counted
        if per_job[d.job_id] > r.max_attempts:
            bad.append(f"job {d.job_id}: more than {r.max_attempts} attempts")
        day = r.local_day(d.decided)
        per_account_day[(d.account_id, day)] += 1
        limit = daily_limits.get(d.account_id)
        if limit is not None and per_account_day[(d.account_id, day)] > limit:
            bad.append(f"account {d.account_id}: more than {limit} calls on {day}")
        per_batch_day[(d.batch_id, day)].add(d.job_id)
        if r.daily_quota is not None and len(per_batch_day[(d.batch_id, day)]) > r.daily_quota:
            bad.append(f"batch {d.batch_id}: more than {r.daily_quota} people on {day}")
    return sorted(set(bad))


async def check_log(sim: RetellSimulator, *, dnc: dict[str, set[str]] | None = None,
                    rules_at: Callable[[Dial], Rules | None] | None = None) -> tuple[list[Dial], list[str]]:
    """Join the dial log with the stored jobs and check it against every batch's stored rules (or, where
    ``rules_at`` gives them, the rules in force when that dial was decided)."""
    jobs = await Job.find_all().to_list()
    batches = await Batch.find_all().to_list()
    accounts = await Account.find_all().to_list()
    dials = collect_dials(sim, jobs)
    phones = {(j.account_id, j.person_key): {p.number for p in j.phones} for j in jobs}
    stored = {b.id: Rules.of(b.call_settings) for b in batches}
    found = violations(dials, lambda d: (rules_at and rules_at(d)) or stored[d.batch_id],
                       daily_limits={a.id: a.daily_call_limit for a in accounts}, do_not_call=dnc or {},
                       person_phones=phones)
    return dials, found


# --- driving a running instance ---------------------------------------------------------------------


async def wait_for(predicate: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    """Poll the database-backed ``predicate`` (there is no event to wait on from outside the runtime)."""
    with anyio.fail_after(within):
        while not await predicate():  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def settled(*batch_ids: str) -> bool:
    """No job of these batches can still be dialed or is being dialed."""
    return await Job.find({"batch_id": {"$in": list(batch_ids)},
                           "state": {"$nin": [s.value for s in FINAL]}}).count() == 0


async def drive(db, config, clock: SimClock, sim: RetellSimulator,
                body: Callable[[Instance, aiohttp.ClientSession, str], Awaitable[None]], *,
                within: float = 90.0) -> None:
    """Run the runtime while ``body`` talks to it over HTTP; stop it when ``body`` returns."""
    stop, ready, box = anyio.Event(), anyio.Event(), []

    def on_ready(instance: Instance) -> None:
        box.append(instance)
        ready.set()

    async def run_body() -> None:
        try:
            with anyio.fail_after(within):
                await ready.wait()
                base = f"http://127.0.0.1:{box[0].api.port}"
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                    await body(box[0], http, base)
        finally:
            stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_body)
        await run_campaign(db, config, clock, sim, timeout=within + 10, stop=stop, on_ready=on_ready)


@pytest.fixture(autouse=True)
def control_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPEECHAI_CONTROL_TOKEN", TOKEN)
    return TOKEN


def hours(*ranges: tuple[int, int]) -> list[HourRange]:
    return [HourRange(start=time(a), end=time(b)) for a, b in ranges]


def local(d: Dial) -> datetime:
    return d.at.astimezone(SCL)


# --- 1. a multi-week campaign -----------------------------------------------------------------------

MONDAY_0730 = datetime(2026, 4, 27, 7, 30, tzinfo=SCL)  # CL holidays ahead: Fri 1 May, Thu 21 May
CHILE = CallSettings(preset=Preset.CHILE, allowed_hours=hours((7, 21)), days_of_week=[1, 2, 3, 4, 5, 6, 7],
                     holidays_country=None, priority=5, max_attempts=6, max_call_duration_s=300)
PLAIN = CallSettings(allowed_hours=hours((9, 18)), days_of_week=[1, 2, 3, 4, 5], waves=[time(9), time(12), time(15)],
                     daily_quota=5, priority=1, max_attempts=4, max_call_duration_s=300,
                     retry_delay_min=RetryDelays(no_answer=60, voicemail=90, conversation=180))
CREDITS = CallSettings(allowed_hours=hours((9, 19)), days_of_week=[1, 2, 3, 4, 5], max_call_duration_s=120,
                       max_attempts=3)


def n(i: int, series: int = 1) -> str:
    return f"+569{series}{i:07d}"


DNC_ASKER = Person([n(0)], {n(0): ["dnc_request"]}, name="Pide no llamar")
ROTATES = Person([n(1), n(101)], {n(1): ["invalid_number"], n(101): ["no_answer", "success"]})
NEVER_ANSWERS = Person([n(2)], {n(2): ["no_answer"]})
ALL_BAD = Person([n(7), n(107)], {n(7): ["invalid_number"], n(107): ["dial_failed"]})
SHARED = [Person([n(5), n(105)]), Person([n(6)])]  # also in the plain batch: the same people
LISTED = Person([n(1, 2)], {n(1, 2): ["success"]}, name="En lista")


async def test_multi_week_campaign_keeps_every_rule(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_0730, speed=600)
    cl_people = [DNC_ASKER, ROTATES, NEVER_ANSWERS, Person([n(3)], {n(3): ["success"]}),
                 Person([n(4)], {n(4): ["voicemail", "success"]}), *SHARED, ALL_BAD,
                 *(Person([n(i)]) for i in range(8, 14))]
    plain_people = [DNC_ASKER, LISTED, *SHARED,
                    Person([n(4, 2)], {n(4, 2): ["no_answer"]}), Person([n(5, 2)], {n(5, 2): ["busy", "answered"]}),
                    *(Person([n(i, 2)]) for i in range(6, 16))]
    credit_people = [Person([n(i, 3)], {n(i, 3): ["success"]}) for i in range(6)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=11) as sim:
        script(sim, cl_people + plain_people + credit_people)
        await Account(id="acme", daily_call_limit=12).insert()
        await Account(id="credito", plan=Plan.CREDITS, balance_cents=60).insert()
        await DoNotCall(account_id="acme", key=n(1, 2), reason="asked by letter", added_at=clock.now()).insert()
        cl = await seed_batch("cl", cl_people, CHILE, clock.now())
        plain = await seed_batch("plain", plain_people, PLAIN, clock.now())
        await seed_batch("cred", credit_people, CREDITS, clock.now(), account="credito")
        budget = {"cents": 60}
        seen: dict[str, Any] = {}

        async def body(instance: Instance, http: aiohttp.ClientSession, base: str) -> None:
            async def out_of_credit() -> bool:
                account = await Account.get("credito")
                assert account.spent_cents + account.reserved_cents <= budget["cents"]
                if not account.suspended_reason:
                    return False
                jobs = await Job.find({"batch_id": "cred"}).to_list()
                # every job still held is on a call (passed the checks), none is still being decided
                deciding = [j for j in jobs if j.state == JobState.IN_FLIGHT
                            and not (j.attempts and j.attempts[-1].outcome is None)]
                return not deciding and any(j.state == JobState.SUSPENDED for j in jobs)

            await wait_for(out_of_credit)
            seen["suspended"] = {str(j.id): j.last_reason
                                 for j in await Job.find({"batch_id": "cred", "state": "suspended"}).to_list()}
            seen["topup_at"] = clock.now()
            async with http.post(f"{base}/accounts/credito/topup", json={"cents": 400}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["suspended_reason"] is None
            budget["cents"] += 400

            async def finished() -> bool:
                account = await Account.get("credito")
                assert account.spent_cents + account.reserved_cents <= budget["cents"]
                return await settled("cl", "plain", "cred")

            await wait_for(finished, within=150)

        await drive(db, make_config(db, mongo_uri, tmp_path), clock, sim, body, within=170)

        dials, found = await check_log(sim, dnc={"acme": {n(1, 2)}})
        assert found == []
    by_phone: dict[str, list[Dial]] = defaultdict(list)
    for d in dials:
        by_phone[d.phone].append(d)
    assert max(d.at for d in dials) - min(d.at for d in dials) >= timedelta(days=14)  # a multi-week run

    # the person who asked not to be called: excluded, listed, and their plain-batch job never dialed
    asked = await Job.get(cl[0].id)
    assert asked.state == JobState.EXCLUDED and "asked not to be called" in asked.last_reason
    assert {e.key for e in await DoNotCall.find({"account_id": "acme"}).to_list()} >= {n(0), n(1, 2)}
    other = await Job.get(plain[0].id)
    assert other.state == JobState.EXCLUDED and "do-not-call" in other.last_reason and not other.attempts
    assert len(by_phone[n(0)]) == 1
    listed = await Job.get(plain[1].id)
    assert listed.state == JobState.EXCLUDED and not by_phone[n(1, 2)]
    # a bad number moves on to the next phone at once; all phones bad fails the job with that reason
    rotated = await Job.get(cl[1].id)
    assert rotated.phones[0].bad and [a.phone for a in rotated.attempts][:2] == [n(1), n(101)]
    failed = await Job.get(cl[7].id)
    assert failed.state == JobState.FAILED and "phone" in failed.last_reason
    # Chile: one call a week; excluded after three weeks without an answer
    silent = [local(d) for d in by_phone[n(2)]]
    assert len(silent) == 3 and all(b - a >= timedelta(days=7) for a, b in pairwise(silent))
    assert (await Job.get(cl[2].id)).state == JobState.EXCLUDED
    # the limits were reached, so the checker's verdict on them means something
    acme_days = defaultdict(int)
    plain_days: dict[date, set[str]] = defaultdict(set)
    for d in dials:
        if d.account_id == "acme":
            acme_days[local(d).date()] += 1
        if d.batch_id == "plain":
            plain_days[local(d).date()].add(d.job_id)
    assert max(acme_days.values()) == 12 and max(len(v) for v in plain_days.values()) == 5
    assert not any(local(d).date() in (date(2026, 5, 1), date(2026, 5, 21)) for d in dials if d.batch_id == "cl")
    # credits: suspended (not failed) when out of credit, resumed by the top-up, never overspent
    assert seen["suspended"] and all("out of credit" in r for r in seen["suspended"].values())
    for job_id in seen["suspended"]:
        assert any(d.job_id == job_id and d.at >= seen["topup_at"] for d in dials), job_id
    account = await Account.get("credito")
    assert account.reserved_cents == 0 and account.balance_cents >= 0 and account.suspended_reason is None
    charged = sum(math.ceil(round(d.cost_cents, 6)) for d in dials if d.account_id == "credito")
    assert account.balance_cents == 460 - charged and 0 < account.spent_cents <= 460
    assert all(j.state == JobState.DONE for j in await Job.find({"batch_id": "cred"}).to_list())
    assert all(j.state in FINAL for j in await Job.find_all().to_list())


async def test_higher_priority_batch_dials_first_when_slots_are_scarce(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(datetime(2026, 3, 2, 8, 55, tzinfo=SCL), speed=600)
    settings = CallSettings(allowed_hours=hours((9, 18)), days_of_week=[1, 2, 3, 4, 5], max_attempts=1)
    hi = [Person([n(i, 4)], {n(i, 4): ["answered"]}) for i in range(5)]
    lo = [Person([n(i, 5)], {n(i, 5): ["answered"]}) for i in range(5)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=2) as sim:
        script(sim, hi + lo)
        await seed_batch("lo", lo, settings.model_copy(update={"priority": 1}), clock.now())
        await seed_batch("hi", hi, settings.model_copy(update={"priority": 9}), clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=2), clock, sim)
    order = [d.metadata["batch_id"] for d in sorted(sim.dials, key=lambda d: d.at)]
    # the fifth "hi" and the first "lo" may start in the same round (two slots freed together)
    assert order[:4] == ["hi"] * 4 and sorted(order[4:6]) == ["hi", "lo"] and order[6:] == ["lo"] * 4


async def test_same_person_in_two_batches_is_never_on_two_calls(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(datetime(2026, 3, 2, 8, 55, tzinfo=SCL), speed=600)
    settings = CallSettings(allowed_hours=hours((9, 18)), days_of_week=[1, 2, 3, 4, 5], max_attempts=1)
    people = [Person([n(i, 6)], {n(i, 6): ["answered"]}) for i in range(3)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=4) as sim:
        script(sim, people)
        await seed_batch("a", people, settings, clock.now())
        await seed_batch("b", people, settings, clock.now())
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
        dials, found = await check_log(sim)
    assert found == []
    assert len(dials) == 6  # each person once per batch, one call at a time


# --- 3. decisions not to dial are recorded on the job -------------------------------------------------


async def _crashed_holder(batch_id: str, person: Person, now: datetime, account: str = "acme") -> Job:
    """A job an instance claimed and then died holding (lease long expired): the next instance takes it
    over and must re-check everything before dialing."""
    job = Job(account_id=account, batch_id=batch_id, dedup_key=f"{account}:{batch_id}:crashed",
              person_key=person.phones[0], phones=[Phone(number=p) for p in person.phones],
              state=JobState.IN_FLIGHT, lease=Lease(owner="crashed-instance", until_ms=0), next_try_at=now,
              created_at=now, updated_at=now)
    await job.insert()
    return job


async def test_decisions_not_to_dial_are_recorded(db, mongo_uri, tmp_path) -> None:
    saturday_2200 = datetime(2026, 3, 7, 22, 0, tzinfo=SCL)
    clock = SimClock(saturday_2200, speed=600)
    weekdays = CallSettings(allowed_hours=hours((9, 18)), days_of_week=[1, 2, 3, 4, 5], max_attempts=2)
    chile = CallSettings(preset=Preset.CHILE, allowed_hours=hours((9, 18)), max_attempts=2,
                         retry_delay_min=RetryDelays(no_answer=60))
    night = Person([n(1, 7)], {n(1, 7): ["success"]})
    paused = Person([n(2, 7)], {n(2, 7): ["success"]})
    capped = Person([n(3, 7)], {n(3, 7): ["no_answer"]})
    listed = Person([n(4, 7)], {n(4, 7): ["success"]})
    broke = Person([n(5, 7)], {n(5, 7): ["success"]})
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=6) as sim:
        script(sim, [night, paused, capped, listed, broke])
        now = clock.now()
        await seed_batch("weekdays", [], weekdays, now)
        await seed_batch("paused", [], weekdays, now, status=BatchStatus.PAUSED)
        [capped_job, listed_job] = await seed_batch("chile", [capped, listed], chile, now)
        await Account(id="broke", plan=Plan.CREDITS, balance_cents=10).insert()
        [broke_job] = await seed_batch("broke", [broke], weekdays, now, account="broke")
        night_job = await _crashed_holder("weekdays", night, now)
        paused_job = await _crashed_holder("paused", paused, now)
        await DoNotCall(account_id="acme", key=n(4, 7), reason="asked by email", added_at=now).insert()
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
        dials, found = await check_log(sim, dnc={"acme": {n(4, 7)}})
    assert found == []

    def reasons(job: Job) -> list[str]:
        return [t.reason for t in job.history]

    # taken over at night: not dialed, retried when the window opens on Monday, reason readable
    night_job = await Job.get(night_job.id)
    assert any(r.startswith("outside allowed hours; next window 2026-03-09T12:00") for r in reasons(night_job))
    assert night_job.state == JobState.DONE
    night_dial = next(d for d in dials if d.phone == n(1, 7))
    assert local(night_dial).date() == date(2026, 3, 9) and local(night_dial).time() >= time(9)
    # taken over in a paused batch: handed back as pending, never dialed
    paused_job = await Job.get(paused_job.id)
    assert paused_job.state == JobState.PENDING and paused_job.last_reason == "batch is paused"
    assert not paused_job.attempts and not any(d.phone == n(2, 7) for d in dials)
    # Chile's one call a week: the retry an hour later is refused by the cap and waits seven days
    capped_job = await Job.get(capped_job.id)
    assert any("calls in the last 7 days (limit 1)" in r for r in reasons(capped_job))
    at = [d.at for d in dials if d.phone == n(3, 7)]
    assert len(at) == 2 and at[1] - at[0] >= timedelta(days=7)
    # do-not-call: excluded before any dial
    listed_job = await Job.get(listed_job.id)
    assert listed_job.state == JobState.EXCLUDED and listed_job.last_reason == "on the do-not-call list"
    # out of credit: suspended (not failed), the account marked, nothing dialed
    broke_job = await Job.get(broke_job.id)
    assert broke_job.state == JobState.SUSPENDED and broke_job.last_reason.startswith("out of credit")
    assert (await Account.get("broke")).suspended_reason == "out of credit"
    assert not any(d.phone == n(5, 7) for d in dials)


# --- 5. settings changes apply to the next decision --------------------------------------------------


async def test_narrowed_window_applies_to_the_next_decision(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(datetime(2026, 3, 2, 8, 59, tzinfo=SCL), speed=600)
    wide = CallSettings(allowed_hours=hours((9, 19)), days_of_week=[1, 2, 3, 4, 5], max_attempts=4,
                        retry_delay_min=RetryDelays(no_answer=60))
    people = [Person([n(i, 8)], {n(i, 8): ["no_answer"]}) for i in range(3)]
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=8) as sim:
        script(sim, people)
        await seed_batch("b", people, wide, clock.now())
        changed: dict[str, datetime] = {}

        async def body(instance: Instance, http: aiohttp.ClientSession, base: str) -> None:
            async def first_round() -> bool:
                return len(sim.dials) >= 3

            await wait_for(first_round)
            narrow = wide.model_copy(update={"allowed_hours": hours((15, 17))}).model_dump(mode="json")
            async with http.put(f"{base}/batches/b/settings", json=narrow) as resp:
                assert resp.status == 200, await resp.text()
            changed["at"] = clock.now()
            instance.rt.limits.skip_idle = True  # the change has landed: idle stretches may be skipped now
            await wait_for(lambda: settled("b"), within=60)

        # No idle skipping at first: the operator's change has to land while the campaign is running.
        config = make_config(db, mongo_uri, tmp_path, skip_idle=False)
        await drive(db, config, clock, sim, body, within=70)
        before = Rules.of(wide)
        dials, found = await check_log(sim, rules_at=lambda d: before if d.decided < changed["at"] else None)
    assert found == []  # later dials checked against the settings now stored: 15:00-17:00
    # The first round went out under the wide window, before the change; how soon after 9:00 depends on
    # how long the runtime took to start, which the clock (running from 8:59) does not wait for.
    assert all(d.decided < changed["at"] and local(d).time() >= time(9) for d in dials[:3])
    assert changed["at"].astimezone(SCL).time() < time(10)  # changed before the first retry was due
    later = [local(d) for d in dials[3:]]
    assert later and all(time(15) <= t.time() < time(17) for t in later)
    assert len(dials) == 12  # 4 attempts each: 3 on Monday (9:00, 15:00, 16:00), 1 on Tuesday
