"""The Chile caller-ID rule refused where a batch is loaded: the loader (what ``speechai load`` runs), the
upload route and ``POST /batches``, over real HTTP against the embedded server; the account's override
lets a batch through, said in the load summary and the log, and is audited when it is set or cleared."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import anyio
import pytest
from structlog.testing import capture_logs

from speechai.loader.errors import LoadError
from speechai.loader.service import load_batch
from speechai.loader.spec import BatchSource
from speechai.loader.synthetic import valid_rut, write_csv
from speechai.store.api_models import AuditEntry
from speechai.store.models import Account, Batch, CallerId, Job
from tests.dialing.conftest import DEFAULT_600, LANDLINE, MONDAY_0900

HEADERS = ["RUT", "NOMBRE", "TELEFONO", "MONTO"]
ROWS = [[valid_rut(21373101), "Ana Díaz", 991975219, 50000], [valid_rut(12345670), "Luis Soto", 981234567, 2000]]


def _file(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "deudores.csv", HEADERS, ROWS)


async def _override(account: str, text: str | None) -> None:
    await Account.get_pymongo_collection().update_one({"_id": account}, {"$set": {"chile_rule_override": text}})


async def test_the_loader_refuses_a_collection_batch_off_600_and_writes_nothing(db, tmp_path) -> None:
    await Account(id="acme").insert()
    source = BatchSource(file=_file(tmp_path), account="acme", batch_id="b1", format="collection",
                         from_number=LANDLINE)
    with pytest.raises(LoadError) as refused:
        await load_batch(source, now=MONDAY_0900, report_dir=tmp_path / "r")
    assert "CL-600" in str(refused.value) and LANDLINE in str(refused.value) and "Subtel" in str(refused.value)
    assert await Batch.get("b1") is None and await Job.find({"batch_id": "b1"}).to_list() == []

    # the configured default number counts for a batch without numbers of its own
    plain = BatchSource(file=_file(tmp_path), account="acme", batch_id="b2", format="collection")
    with pytest.raises(LoadError, match="CL-600"):
        await load_batch(plain, now=MONDAY_0900, report_dir=tmp_path / "r", default_from_number=LANDLINE)
    summary = await load_batch(plain, now=MONDAY_0900, report_dir=tmp_path / "r", default_from_number=DEFAULT_600)
    assert summary.ok and summary.jobs_created == 2 and summary.chile_rule_override is None


async def test_the_override_lets_the_load_through_and_the_summary_and_log_say_so(db, tmp_path) -> None:
    await Account(id="acme", chile_rule_override="court challenge of the 600 rule, ticket LEG-12").insert()
    source = BatchSource(file=_file(tmp_path), account="acme", batch_id="b1", format="collection",
                         from_number=LANDLINE)
    with capture_logs() as logs:
        summary = await load_batch(source, now=MONDAY_0900, report_dir=tmp_path / "r")
    assert summary.ok and summary.jobs_created == 2
    said = summary.to_dict()["chile_rule_override"]
    assert "LEG-12" in said["override"] and "CL-600" in said["violations"] and LANDLINE in said["violations"]
    [line] = [e for e in logs if e["event"] == "chile_rule_overridden"]
    assert line["batch_id"] == "b1" and "LEG-12" in line["override"]

    # a reload once the override is gone is refused: the stored batch keeps its use case and number
    await _override("acme", None)
    with pytest.raises(LoadError, match="CL-600"):
        await load_batch(source, now=MONDAY_0900, report_dir=tmp_path / "r")


async def _upload(api, who: str, path: Path, **fields: object) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v if isinstance(v, str) else json.dumps(v))
    form.add_field("file", await anyio.Path(path).read_bytes(), filename=path.name, content_type="text/csv")
    return await api.call(who, "POST", "/batches/upload", data=form)


async def test_the_upload_route_refuses_off_600_and_takes_a_600_pool(dialing_api, tmp_path) -> None:
    api = dialing_api
    status, body = await _upload(api, "acme:operator", _file(tmp_path), account="acme", batch_id="u1",
                                 format="collection", from_number=LANDLINE)
    assert status == 422 and "CL-600" in body["error"] and LANDLINE in body["error"]
    assert await Batch.get("u1") is None

    # a marketing batch must dial from 809
    status, body = await _upload(api, "acme:operator", _file(tmp_path), account="acme", batch_id="u1",
                                 options={"use_case": "marketing", "caller_ids": [{"number": DEFAULT_600}]})
    assert status == 422 and "CL-809" in body["error"] and DEFAULT_600 in body["error"]

    pool = [{"number": "+566001000001", "region": "RM"}, {"number": "+566001000002"}]
    status, body = await _upload(api, "acme:operator", _file(tmp_path), account="acme", batch_id="u1",
                                 format="collection", from_number=LANDLINE,
                                 options={"caller_ids": pool, "caller_id_daily_cap": 50})
    assert status == 200, body
    batch = await Batch.get("u1")
    assert batch.use_case == "collection" and batch.caller_id_daily_cap == 50
    assert batch.caller_ids == [CallerId(number="+566001000001", region="RM"), CallerId(number="+566001000002")]

    status, body = await _upload(api, "acme:operator", _file(tmp_path), account="acme", batch_id="u2",
                                 options={"use_case": "collections"})
    assert status == 422 and "use_case" in body["error"] and "'collections'" in body["error"]
    status, body = await _upload(api, "acme:operator", _file(tmp_path), account="acme", batch_id="u2",
                                 options={"caller_ids": [{"number": "22900000"}]})
    assert status == 422 and "caller_ids" in body["error"] and "22900000" in body["error"]


async def test_post_batches_refuses_off_600(dialing_api) -> None:
    rows = [{"RUT": r[0], "NOMBRE": r[1], "TELEFONO": str(r[2]), "MONTO": r[3]} for r in ROWS]
    status, body = await dialing_api.call("acme:operator", "POST", "/batches", json={
        "account_id": "acme", "batch_id": "j1", "format": "collection", "from_number": LANDLINE, "rows": rows})
    assert status == 422 and "CL-600" in body["detail"] and LANDLINE in body["detail"]
    assert await Batch.get("j1") is None
    status, body = await dialing_api.call("acme:operator", "POST", "/batches", json={
        "account_id": "acme", "batch_id": "j1", "format": "collection", "from_number": DEFAULT_600, "rows": rows})
    assert status == 201 and body["jobs_created"] == 2


async def test_the_override_is_set_audited_used_and_cleared_over_the_api(dialing_api, tmp_path) -> None:
    api = dialing_api
    text = "court challenge of the 600 rule, ticket LEG-12"
    status, body = await api.call("acme:operator", "PATCH", "/accounts/acme/settings",
                                  json={"chile_rule_override": text})
    assert status == 200 and body["chile_rule_override"] == text
    assert body["changes"]["chile_rule_override"] == {"before": None, "after": text}
    status, body = await _upload(api, "acme:operator", _file(tmp_path), account="acme", batch_id="u1",
                                 format="collection", from_number=LANDLINE)
    assert status == 200 and "LEG-12" in body["chile_rule_override"]["override"]

    status, body = await api.call("acme:operator", "PATCH", "/accounts/acme/settings",
                                  json={"chile_rule_override": "  "})  # empty clears it
    assert status == 200 and body["chile_rule_override"] is None
    audit = await AuditEntry.find({"account_id": "acme", "action": "account.settings"}).sort("+seq").to_list()
    assert [(a.before, a.after) for a in audit] == [
        ({"chile_rule_override": None}, {"chile_rule_override": text}),
        ({"chile_rule_override": text}, {"chile_rule_override": None})]
    status, body = await _upload(api, "acme:operator", _file(tmp_path), account="acme", batch_id="u2",
                                 format="collection", from_number=LANDLINE)
    assert status == 422 and "CL-600" in body["error"]
