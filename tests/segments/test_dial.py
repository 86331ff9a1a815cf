"""The segment takes effect at dial time, through the real scheduler and call actors against the
simulator over HTTP: each call goes out with its segment's agent and variables, and the segment's
max_attempts override bounds its people's retries."""

from __future__ import annotations

from pathlib import Path

from actors.clock import SimClock
from speechai.loader.service import load_batch
from speechai.loader.spec import BatchSource
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Job
from tests.runtime.harness import API_KEY, make_config, run_campaign
from tests.segments.data import AGENT_VARIABLES, EXPECTED, NOW, RULES, collection_file

AGENTS = {"early": "agent_soft", "big-late": "agent_firm", "talca": "agent_batch", "default": "agent_batch"}
EXTRA = {"early": {"discount": "10%", "payment_deadline": "2026-03-20"}, "big-late": {"instalment_offer": "12"},
         "talca": {"office": "Talca"}, "default": {}}


async def test_calls_carry_the_segment_agent_variables_and_attempt_limit(db, mongo_uri, tmp_path: Path) -> None:
    source = BatchSource(file=collection_file(tmp_path), account="acme", batch_id="b1", agent_id="agent_batch",
                         segments=RULES, agent_variables=AGENT_VARIABLES,
                         call_settings={"max_attempts": 2, "retry_delay_min": {"no_answer": 30}})
    assert (await load_batch(source, now=NOW, report_dir=tmp_path / "r")).ok
    clock = SimClock(NOW, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=3) as sim:
        for phone in EXPECTED:
            sim.script(phone, "no_answer", "no_answer", "no_answer")
        await run_campaign(db, make_config(db, mongo_uri, tmp_path, concurrency=4), clock, sim, timeout=60)
        calls, dials = sim.calls, list(sim.dials)
    per_phone: dict[str, list[dict]] = {}
    for d in dials:
        per_phone.setdefault(d.to_number, []).append(calls[d.call_id])
    for phone, segment in EXPECTED.items():
        sent = per_phone[phone]
        # early: max_attempts 1 (its override); the others: the batch's 2
        assert len(sent) == (1 if segment == "early" else 2), (phone, segment)
        for call in sent:
            assert call["agent_id"] == AGENTS[segment]
            variables = call["retell_llm_dynamic_variables"]
            assert {k: variables.get(k) for k in EXTRA[segment]} == EXTRA[segment]
            assert variables["name"].startswith("Persona")  # the person's own variables still go
            others = set().union(*(EXTRA[s] for s in EXTRA if s != segment)) - set(EXTRA[segment])
            assert not others & set(variables) - {"payment_deadline"}
    jobs = await Job.find({"batch_id": "b1"}).to_list()
    assert {j.phones[0].number: j.segment for j in jobs} == EXPECTED
    assert all(a.agent_id == AGENTS[j.segment] for j in jobs for a in j.attempts if a.placed)
