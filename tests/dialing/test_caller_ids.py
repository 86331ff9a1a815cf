"""Caller-ID pools and the Chile rule: the pure rules, then through the real scheduler and the simulator
over HTTP (local presence, per-number daily caps, resting a number the carrier flagged, the Chile
refusal at run and its audited override)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from actors.clock import SimClock
from speechai.dialing import caller_ids
from speechai.dialing.caller_ids import candidates, chile_violations, local_key, person_keys
from speechai.domain.settings import CallSettings
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, Batch, BatchStatus, CallerId, CallerIdRest, Job, JobState
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

SCL = ZoneInfo("America/Santiago")
MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
A, B, C = "+566001000001", "+566001000002", "+566001000003"


# --- pure rules -------------------------------------------------------------------------------------


def test_chile_collection_needs_600_and_marketing_809_by_prefix() -> None:
    assert chile_violations("collection", [A, B], chile=True) == []
    assert chile_violations("marketing", ["+568091234567"], chile=True) == []  # 809 is unknown to the metadata
    [v] = chile_violations("collection", [A, "+56229000000", "+568091234567"], chile=True)
    assert v.rule == "CL-600" and v.numbers == ("+56229000000", "+568091234567")
    assert "Subtel" in v.message and "+56229000000" in v.message
    [v] = chile_violations("marketing", [A], chile=False)  # a +56 number makes it a Chile batch
    assert v.rule == "CL-809" and v.numbers == (A,)
    assert chile_violations("reminder", ["+14155550100"], chile=False) == []  # not a Chile batch
    assert chile_violations(None, ["+56229000000"], chile=True) == []  # no use case declared: not checked
    with pytest.raises(ValueError, match="use_case 'cobranza' is not one of"):
        chile_violations("cobranza", [A], chile=True)


def test_local_keys_of_people_and_numbers() -> None:
    assert local_key("+14155550100") == "415"
    assert local_key("+56322123456") == "VS" and local_key("+56221234567") == "RM"
    assert local_key("+56912345678") is None and local_key(A) is None  # mobiles and 600 are not geographic
    assert person_keys(["+56912345678", "+56322123456"], "rm") == {"VS", "RM"}


def test_candidates_prefer_local_then_least_used_and_skip_rested_and_capped() -> None:
    pool = [CallerId(number=A, region="RM"), CallerId(number=B, region="VS"), CallerId(number=C)]
    assert candidates(pool, usage={}, rested=set(), cap=2, local={"VS"}) == [B, A, C]
    assert candidates(pool, usage={B: 2, A: 1}, rested=set(), cap=2, local={"VS"}) == [C, A]
    assert candidates(pool, usage={}, rested={A}, cap=None, local={"RM"}) == [B, C]
    us = [CallerId(number="+12125550100"), CallerId(number="+14155550100")]
    assert candidates(us, usage={"+14155550100": 9}, rested=set(), cap=None, local={"415"})[0] == "+14155550100"


# --- through the runtime -------------------------------------------------------------------------------


async def _set(batch_id: str, **fields) -> None:
    await Batch.get_pymongo_collection().update_one({"_id": batch_id}, {"$set": fields})


def _pool(*entries: CallerId) -> list[dict]:
    return [e.model_dump() for e in entries]


async def test_local_presence_and_daily_caps_per_number(db, mongo_uri, tmp_path) -> None:
    """Each dial is from the local number if it is under its cap, else the least used one; no number
    exceeds its cap of 2 a day, so the seventh person waits for the next day. Replayed against the rule."""
    clock = SimClock(MONDAY_1000, speed=600)
    phones = ["+56322123451", "+56322123452", "+56221234563", "+56971000004", "+56971000005", "+56971000006",
              "+56971000007"]
    people = [Person([p], {p: ["success"]}) for p in phones]
    pool = [CallerId(number=A, region="RM"), CallerId(number=B, region="VS"), CallerId(number=C)]
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, people)
        await seed_batch("b1", people, CallSettings(preset="chile"), clock.now())
        await _set("b1", caller_ids=_pool(*pool), caller_id_daily_cap=2, use_case="collection")
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=1), clock, sim, timeout=60)
        dials = list(sim.dials)
    assert len(dials) == 7
    usage: dict[tuple[str, str], int] = Counter()
    for d in dials:
        day = d.at.astimezone(SCL).date().isoformat()
        today = {n: c for (dd, n), c in usage.items() if dd == day}
        expected = candidates(pool, usage=today, rested=set(), cap=2, local=person_keys([d.to_number]))[0]
        assert d.from_number == expected, (d.to_number, d.from_number, today)
        usage[(day, d.from_number)] += 1
    assert max(usage.values()) == 2
    assert dials[0].from_number == B  # the first Valparaíso landline from the Valparaíso number
    assert dials[6].at.astimezone(SCL).date() > dials[5].at.astimezone(SCL).date()  # next day: all capped
    jobs = {j.phones[0].number: j for j in await Job.find({"batch_id": "b1"}).to_list()}
    for d in dials:
        assert jobs[d.to_number].attempts[-1].from_number == d.from_number  # recorded on the attempt


async def test_a_number_marked_as_spam_is_rested_and_the_person_retried_from_another(db, mongo_uri,
                                                                                      tmp_path) -> None:
    # the simulator scripts the carrier's spam verdict for p1's first dial (an outcome that never connects)
    clock = SimClock(MONDAY_1000, speed=600)
    p1, p2 = "+56971000001", "+56971000002"
    people = [Person([p1], {p1: ["marked_as_spam", "success"]}), Person([p2], {p2: ["success"]})]
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, people)
        await seed_batch("b1", people, CallSettings(), clock.now())
        await _set("b1", caller_ids=_pool(CallerId(number=A), CallerId(number=B)))
        with capture_logs() as logs:
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=1), clock, sim, timeout=60)
        dials = [(d.to_number, d.from_number) for d in sim.dials]
    assert dials[0] == (p1, A) and all(f == B for _, f in dials[1:]) and (p1, B) in dials and (p2, B) in dials
    rest = await CallerIdRest.get(f"acme:{A}:2026-03-02")
    assert rest is not None and rest.reason == "marked_as_spam"
    assert [e["from_number"] for e in logs if e["event"] == "caller_id_rested"] == [A]
    jobs = await Job.find({"batch_id": "b1"}).to_list()
    assert {j.state for j in jobs} == {JobState.DONE} and not [p for j in jobs for p in j.phones if p.bad]
    assert [r.number for r in await caller_ids.rested_on("acme", "2026-03-02")] == [A]


async def test_run_refuses_a_collection_batch_off_600_and_the_override_is_logged(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    people = [Person([f"+5697100001{i}"], {f"+5697100001{i}": ["success"]}) for i in range(3)]
    async with RetellSimulator(api_key=API_KEY, clock=clock) as sim:
        script(sim, people)
        await seed_batch("b1", people, CallSettings(), clock.now())
        await _set("b1", use_case="collection", from_number="+56229000000")  # a Santiago landline
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim, timeout=60)
        assert sim.dials == []
        batch = await Batch.get("b1")
        assert batch.status == BatchStatus.PAUSED
        assert "CL-600" in batch.status_reason and "+56229000000" in batch.status_reason
        assert {j.state for j in await Job.find({"batch_id": "b1"}).to_list()} == {JobState.PENDING}

        # the account's explicit override: dialed, and said at start (once, however many dials)
        await Account.get_pymongo_collection().update_one(
            {"_id": "acme"}, {"$set": {"chile_rule_override": "court challenge of the 600 rule, ticket LEG-12"}})
        await _set("b1", status="active", status_reason="active by operator")
        with capture_logs() as logs:
            await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim, timeout=60)
        assert len(sim.dials) == 3
    overridden = [e for e in logs if e["event"] == "chile_rule_overridden"]
    assert len(overridden) == 1 and "LEG-12" in overridden[0]["override"] and "CL-600" in overridden[0]["violations"]
    assert {j.state for j in await Job.find({"batch_id": "b1"}).to_list()} == {JobState.DONE}


def test_the_check_the_loader_and_upload_call_uses_pool_then_own_number_then_default() -> None:
    check = caller_ids.batch_caller_id_violations
    assert check(use_case="collection", pool=[A], from_number=None, default_from_number="+56229000000") == []
    [v] = check(use_case="collection", pool=[], from_number=None, default_from_number="+56229000000")
    assert v.numbers == ("+56229000000",)
    [v] = check(use_case="marketing", pool=[], from_number=A, default_from_number="+568091000000")
    assert v.rule == "CL-809" and v.numbers == (A,)
    assert check(use_case="collection", pool=[], from_number="+14155550100", default_from_number=A) == []
    [v] = check(use_case="collection", pool=[], from_number="+14155550100", default_from_number=A, preset="chile")
    assert v.numbers == ("+14155550100",)  # a Chile batch calling from a foreign number breaks the rule too
