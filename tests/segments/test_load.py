"""Loads with segment rules, through the real loader and the embedded server: each job records its
segment and priority, a rule on a missing column refuses the load naming rule and field, overlaps are
warned in the summary; the upload form takes the rules too."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechai.loader.errors import LoadError
from speechai.loader.service import load_batch
from speechai.loader.spec import BatchSource
from speechai.store.models import Batch, Job
from tests.segments.data import AGENT_VARIABLES, EXPECTED, NOW, RULES, collection_file


def source(path: Path, rules: list, **kw: object) -> BatchSource:
    return BatchSource(file=path, account="acme", batch_id="b1", segments=rules,  # type: ignore[arg-type]
                       agent_variables=AGENT_VARIABLES, **kw)


async def test_each_job_records_its_segment_and_priority(db, tmp_path: Path) -> None:
    summary = await load_batch(source(collection_file(tmp_path), RULES, call_settings={"priority": 5}),
                               now=NOW, report_dir=tmp_path / "r")
    assert summary.ok and summary.jobs_created == 5
    assert summary.segments == {"early": 2, "big-late": 1, "talca": 1, "default": 1}
    assert summary.to_dict()["segment_warnings"] == []
    jobs = {j.phones[0].number: j for j in await Job.find({"batch_id": "b1"}).to_list()}
    assert {n: j.segment for n, j in jobs.items()} == EXPECTED
    # the segment's priority override, else the batch's own
    assert {n: j.priority for n, j in jobs.items()} == {"+56975000001": 60, "+56975000002": 90,
                                                        "+56975000003": 5, "+56975000004": 5, "+56975000005": 60}
    batch = await Batch.get("b1")
    assert [r.name for r in batch.segments] == ["early", "big-late", "talca", "default"]
    assert batch.segments[0].overrides == {"max_attempts": 1, "priority": 60}


async def test_a_rule_on_a_missing_column_refuses_the_load_naming_rule_and_field(db, tmp_path: Path) -> None:
    rules = [{"name": "vip", "match": {"plan": "gold"}}, {"name": "default"}]
    with pytest.raises(LoadError, match="segment 'vip', field 'plan': no such column in the file"):
        await load_batch(source(collection_file(tmp_path), rules), now=NOW, report_dir=tmp_path / "r")
    assert await Batch.get("b1") is None and await Job.find({"batch_id": "b1"}).count() == 0


async def test_overrides_that_do_not_fit_the_batch_refuse_the_load(db, tmp_path: Path) -> None:
    rules = [{"name": "default", "overrides": {"waves": ["21:00"]}}]  # the batch dials 09-20
    with pytest.raises(LoadError, match=r"segment 'default', field 'overrides'.*waves"):
        await load_batch(source(collection_file(tmp_path), rules), now=NOW, report_dir=tmp_path / "r")


async def test_overlapping_rules_load_with_warnings(db, tmp_path: Path) -> None:
    rules = [{"name": "a", "match": {"days_late": {"max": 30}}}, {"name": "b", "match": {"days_late": {"min": 10}}},
             {"name": "default"}]
    summary = await load_batch(source(collection_file(tmp_path), rules), now=NOW, report_dir=tmp_path / "r")
    assert summary.ok and summary.segments == {"a": 2, "b": 3}
    [warning] = summary.to_dict()["segment_warnings"]
    assert warning.startswith("segment 'b', field 'days_late': overlaps rule 'a'")


def test_a_bad_rule_in_the_batch_config_names_the_rule(tmp_path: Path) -> None:
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match="exactly one default rule") as exc:
        source(tmp_path / "x.xlsx", [{"name": "a", "match": {"days_late": {"min": 1}}}])
    assert exc.value.errors()[0]["loc"] == ("segments",)


async def test_upload_form_takes_segments(db, tmp_path: Path) -> None:
    from aiohttp.test_utils import TestServer

    from actors.clock import SimClock
    from speechai.api.upload import upload_routes
    from tests.loader.upload_client import operator_app, post_upload

    app = operator_app()
    app.add_routes(upload_routes(clock=SimClock(NOW), report_dir=tmp_path / "reports"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/batches/upload"))
        status, body = await post_upload(url, collection_file(tmp_path), account="acme", batch_id="b1",
                                         segments=RULES, options={"agent_variables": AGENT_VARIABLES})
        assert status == 200 and body["segments"] == {"early": 2, "big-late": 1, "talca": 1, "default": 1}
        status, body = await post_upload(url, collection_file(tmp_path), account="acme", batch_id="b2",
                                         segments=[{"name": "x", "match": {"days_late": "soon"}}, {"name": "d"}])
        assert status == 422 and "days_late is a number" in body["error"]
    finally:
        await server.close()
    assert {j.segment for j in await Job.find({"batch_id": "b1"}).to_list()} == {"early", "big-late", "talca",
                                                                                  "default"}
