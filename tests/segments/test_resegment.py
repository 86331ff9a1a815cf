"""``PUT /batches/{id}/segments`` over real HTTP against the embedded server: jobs not yet dialed are
re-segmented (a job with a placed call or in flight keeps its segment), the answer counts the changes,
the change is audited, the scheduler is told; bad rules are refused naming rule and field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from actors.mailbox import Mailbox
from speechai.api.audit import record
from speechai.api.auth import PRINCIPAL_KEY, Principal
from speechai.api.problems import ApiError
from speechai.api.segment_routes import segment_routes
from speechai.loader.service import load_batch
from speechai.loader.spec import BatchSource
from speechai.runtime.scheduler import Wake
from speechai.store.api_models import AuditEntry, Role
from speechai.store.models import Attempt, Batch, Job, JobState
from tests.segments.data import AGENT_VARIABLES, NOW, RULES, collection_file

NEW_RULES = [{"name": "very-late", "match": {"days_late": {"min": 50}}, "overrides": {"priority": 80},
              "variables": {"discount": "30%"}},
             {"name": "rest"}]


@pytest.fixture
async def api(db, tmp_path: Path) -> AsyncIterator[tuple[str, Mailbox]]:
    """The segment routes as the control endpoint serves them to an admin key, with its audit step."""
    mailbox: Mailbox[Any] = Mailbox(capacity=10)

    @web.middleware
    async def as_admin(request: web.Request, handler: Any) -> web.StreamResponse:
        who = Principal(key_id="k-admin", role=Role.ADMIN, account_id=None)
        request[PRINCIPAL_KEY] = who
        try:
            response = await handler(request)
        except ApiError as exc:
            return exc.response()
        await record(request, who, response.status, datetime(2026, 3, 2, tzinfo=UTC))
        return response

    app = web.Application(middlewares=[as_admin])
    app.add_routes(segment_routes(scheduler_ref=mailbox.ref))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/batches/b1/segments")), mailbox
    finally:
        await server.close()


async def _load(tmp_path: Path) -> dict[str, Job]:
    source = BatchSource(file=collection_file(tmp_path), account="acme", batch_id="b1", segments=RULES,
                         agent_variables=AGENT_VARIABLES)
    assert (await load_batch(source, now=NOW, report_dir=tmp_path / "r")).ok
    return {j.phones[0].number: j for j in await Job.find({"batch_id": "b1"}).to_list()}


async def test_undialed_jobs_are_resegmented_and_counted(api, tmp_path: Path) -> None:
    url, mailbox = api
    jobs = await _load(tmp_path)
    called = jobs["+56975000002"]  # big-late, already talked to: keeps its segment
    called.state = JobState.RETRY
    called.attempts.append(Attempt(attempt_id="a1", phone=called.phones[0].number, created_at=NOW, placed=True))
    await called.replace()
    busy = jobs["+56975000003"]  # talca, being dialed now
    busy.state = JobState.IN_FLIGHT
    await busy.replace()
    not_placed = jobs["+56975000004"]  # default; its only attempt was never placed: still undialed
    not_placed.state = JobState.RETRY
    not_placed.attempts.append(Attempt(attempt_id="a2", phone=not_placed.phones[0].number, created_at=NOW,
                                       placed=False))
    await not_placed.replace()

    async with aiohttp.ClientSession() as http:
        async with http.put(url, json={"segments": NEW_RULES}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        # +…01 (12 days) and +…05 (3 days) go from early to rest; +…04 (75 days) from default to very-late
        assert (body["changed"], body["unchanged"], body["skipped"]) == (3, 0, 0)
        assert body["by_segment"] == {"rest": 2, "very-late": 1}
        after = {j.phones[0].number: j for j in await Job.find({"batch_id": "b1"}).to_list()}
        assert {n: (j.segment, j.priority) for n, j in after.items()} == {
            "+56975000001": ("rest", 0), "+56975000002": ("big-late", 90), "+56975000003": ("talca", 0),
            "+56975000004": ("very-late", 80), "+56975000005": ("rest", 0)}
        assert after["+56975000001"].version == jobs["+56975000001"].version + 1
        assert [r.name for r in (await Batch.get("b1")).segments] == ["very-late", "rest"]
        assert isinstance(mailbox.receive_nowait(), Wake)
        [entry] = await AuditEntry.find({"action": "batch.segments"}).to_list()
        assert entry.target == "b1" and entry.detail["changed"] == 3
        assert [r["name"] for r in entry.before["segments"]] == [r["name"] for r in RULES]

        async with http.put(url, json={"segments": NEW_RULES}) as resp:  # the same again: nothing changes
            body = await resp.json()
        assert (body["changed"], body["unchanged"]) == (0, 3)
        async with http.get(url) as resp:
            got = await resp.json()
        assert got["undialed_by_segment"] == {"rest": 2, "very-late": 1} and len(got["segments"]) == 2


@pytest.mark.parametrize(("rules", "status", "needle"), [
    ([{"name": "x", "match": {"plan": "gold"}}, {"name": "d"}], 422, "segment 'x', field 'plan': no such column"),
    ([{"name": "x", "match": {"days_late": {"min": 5}}}], 422, "exactly one default rule"),
    ([{"name": "d", "overrides": {"max_attempts": 1000}}], 422, "max_attempts"),
])
async def test_bad_rules_are_refused_and_nothing_changes(api, tmp_path: Path, rules: list, status: int,
                                                         needle: str) -> None:
    url, _ = api
    await _load(tmp_path)
    async with aiohttp.ClientSession() as http, http.put(url, json={"segments": rules}) as resp:
        assert resp.status == status
        assert needle in (await resp.text())
    assert [r.name for r in (await Batch.get("b1")).segments] == [r["name"] for r in RULES]
    assert await AuditEntry.find({"action": "batch.segments"}).count() == 0
