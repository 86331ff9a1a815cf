"""The report's dialing sections against a scripted campaign run through the real scheduler and the simulator
over HTTP: per from-number (calls, answer rate, rested days) and per A/B arm (people, attempts, contacts,
successes, promises, cost per success, the difference in success rate with its 95 % CI and the verdict).
Expected figures come from the script and the simulator's own records, not from the jobs."""

from __future__ import annotations

import io
from collections import Counter
from datetime import datetime
from decimal import Decimal

from openpyxl import load_workbook

from actors.clock import SimClock
from speechai.dialing.ab import assign_arm, difference_ci
from speechai.domain.settings import CallSettings
from speechai.reports.data import ReportFilter, build_report
from speechai.reports.render import render_markdown, render_terminal
from speechai.reports.xlsx import xlsx_bytes
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import AgentArm, Batch, CallerId
from tests.dialing.conftest import SCL
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

MONDAY_1000 = datetime(2026, 3, 2, 10, 0, tzinfo=SCL)
A, B = "+566001000001", "+566001000002"
SPLIT = [AgentArm(agent_id="agent_a"), AgentArm(agent_id="agent_b")]


async def test_caller_id_and_arm_sections_match_the_scripted_campaign(db, mongo_uri, tmp_path) -> None:
    clock = SimClock(MONDAY_1000, speed=600)
    phones = [f"+5697200001{i}" for i in range(10)]
    succeeds = set(phones[:6])  # the others talk but do not commit, twice (max_attempts 2), then fail
    people = [Person([p], {p: ["success" if p in succeeds else "answered"]}) for p in phones]
    async with RetellSimulator(api_key=API_KEY, clock=clock, known_agent_ids=["agent_a", "agent_b"]) as sim:
        script(sim, people)
        sim.flag_caller_id(A)  # every call from A ends marked_as_spam: A is rested after the first
        await seed_batch("b1", people, CallSettings(max_attempts=3), clock.now())
        await Batch.get_pymongo_collection().update_one({"_id": "b1"}, {"$set": {
            "caller_ids": [CallerId(number=A).model_dump(), CallerId(number=B).model_dump()],
            "agent_split": [a.model_dump() for a in SPLIT]}})
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=1), clock, sim, timeout=90)
        dials = list(sim.dials)
        calls = sim.calls
    report = await build_report(ReportFilter(batch="b1"), clock.now())

    # per from-number: A had one call (the spam verdict) and rests today; B took every other call
    by_number = {r["from_number"]: r for r in report.section("caller_ids").records()}
    sent = Counter(d.from_number for d in dials)
    assert sent[A] == 1 and set(by_number) == {A, B}
    assert (by_number[A]["calls"], by_number[A]["answered"], by_number[A]["rested_days"]) == (1, 0, 1)
    assert by_number[A]["rested_on"] == "2026-03-02" and by_number[A]["last_rest_reason"] == "marked_as_spam"
    assert by_number[B]["calls"] == sent[B] and by_number[B]["answered"] == sent[B]
    assert by_number[B]["answer_rate"] == Decimal(1) and by_number[B]["rested_days"] == 0

    # per arm: people by the deterministic assignment; calls and cost from the simulator's records
    arm_of = {p: assign_arm("acme", p, SPLIT) for p in phones}
    rows = {r["agent_id"]: r for r in report.section("ab_arms").records()}
    assert list(rows) == ["agent_a", "agent_b"]
    expected = {}
    for arm in ("agent_a", "agent_b"):
        mine = [p for p in phones if arm_of[p] == arm]
        mine_dials = [d for d in dials if d.to_number in mine]
        cost = sum((Decimal(repr(calls[d.call_id]["call_cost"]["combined_cost"])) for d in mine_dials), Decimal(0))
        wins = len(succeeds & set(mine))
        expected[arm] = (len(mine), wins)
        row = rows[arm]
        assert (row["people"], row["attempts"], row["contacts"], row["successes"], row["promises"]) == (
            len(mine), len(mine_dials), len(mine), wins, wins), arm
        assert {calls[d.call_id]["agent_id"] for d in mine_dials} == {arm}  # sent as override_agent_id
        assert row["cost_cents"] == cost
        assert row["cost_per_success_cents"] == ((cost / wins).quantize(Decimal("0.0001")) if wins else None)
    (n1, s1), (n2, s2) = expected["agent_a"], expected["agent_b"]
    d, low, high = difference_ci(s1, n1, s2, n2)
    assert rows["agent_a"]["verdict"] == "control" and rows["agent_a"]["difference"] is None
    assert rows["agent_b"]["verdict"] == "not significant yet"  # fewer than 30 people per arm
    assert rows["agent_b"]["difference"] == Decimal(repr(d)).quantize(Decimal("0.0001"))
    assert rows["agent_b"]["ci95_low"] < rows["agent_b"]["difference"] < rows["agent_b"]["ci95_high"]
    assert rows["agent_b"]["ci95_low"] == Decimal(repr(low)).quantize(Decimal("0.0001"))
    assert rows["agent_b"]["ci95_high"] == Decimal(repr(high)).quantize(Decimal("0.0001"))

    # every rendering carries the sections
    terminal, markdown = render_terminal(report), render_markdown(report)
    for text in (terminal, markdown):
        assert "Calls per caller id" in text and "A/B agent splits" in text and "not significant yet" in text
        assert A in text and "marked_as_spam" in text
    book = load_workbook(io.BytesIO(xlsx_bytes(report)))
    assert {"Caller ids", "Ab arms"} <= set(book.sheetnames)
    sheet = book["Ab arms"]
    assert [c.value for c in sheet[1]][:4] == ["batch", "agent_id", "weight", "people"]
