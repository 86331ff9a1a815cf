"""The upload endpoint over real HTTP on loopback, backed by the embedded server."""

import json
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from loader_data import COLLECTION, NOW, RUT_A, RUT_B
from upload_client import operator_app

from actors.clock import SimClock
from speechai.api.upload import upload_routes
from speechai.store.models import Batch, Job

ROWS = [[RUT_A, "Ana Díaz", 991975219, 50000, "2026-03-10"], [RUT_B, "Luis Soto", 981234567, 2000, None]]


@pytest.fixture
def base_url(upload_url: str) -> str:
    return upload_url  # the loader suite's shared upload server (conftest.py)


async def _post(url: str, path: Path | None, **fields: object) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v if isinstance(v, str) else json.dumps(v))
    if path is not None:
        form.add_field("file", await anyio.Path(path).read_bytes(), filename=path.name,
                       content_type="application/octet-stream")
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as resp:
        return resp.status, await resp.json()


async def test_upload_xlsx_with_call_settings(base_url: str, make_file) -> None:
    status, body = await _post(base_url, make_file(COLLECTION, ROWS), account="acme", batch_id="up1",
                               call_settings={"max_attempts": 2, "timezone": "America/Santiago"},
                               options={"payment_deadline_days": 3})
    assert status == 200, body
    assert body["ok"] and body["people"] == 2 and body["jobs_created"] == 2 and body["format"] == "collection"
    batch = await Batch.get("up1")
    assert batch.call_settings.max_attempts == 2 and batch.source_file.endswith(".xlsx")
    jobs = await Job.find({"batch_id": "up1"}).to_list()
    assert {j.variables["payment_deadline"] for j in jobs} == {"2026-03-05"}
    assert all(j.next_try_at == NOW for j in jobs)
    # Same upload again: idempotent.
    status, body = await _post(base_url, make_file(COLLECTION, ROWS), account="acme", batch_id="up1")
    assert status == 200 and body["jobs_created"] == 0 and body["already_present"] == 2


async def test_upload_csv_with_rejected_rows_answers_422_and_loads_nothing(base_url: str, make_file) -> None:
    rows = [*ROWS, ["11111111-2", "Nadie", 991975219, 1000, None]]
    status, body = await _post(base_url, make_file(COLLECTION, rows, kind="csv"), account="acme",
                               batch_id="up2")
    assert status == 422 and not body["ok"] and "nothing was loaded" in body["error"]
    assert body["rejected"][0] | {"detail": ""} == {"row": 4, "column": "RUT", "value": "11111111-2",
                                                     "reason": "invalid_rut", "detail": ""}
    assert await Job.find({"batch_id": "up2"}).count() == 0


async def test_upload_missing_column_names_expected_and_found(base_url: str, make_file) -> None:
    status, body = await _post(base_url, make_file(["RUT", "NOMBRE", "MONTO"], [[RUT_A, "Ana", 1]]),
                               account="acme", batch_id="up3", format="collection")
    assert status == 422 and body["missing"] == ["phone"] and body["found"] == ["RUT", "NOMBRE", "MONTO"]


@pytest.mark.parametrize("filename,content,status,needle", [
    ("notes.pdf", b"%PDF-1.4", 400, "unsupported file type .pdf"),
    ("fake.xlsx", b"%PDF-1.4", 400, "not a valid .xlsx"),
    ("empty.csv", b"", 400, "empty"),
])
async def test_upload_bad_files(base_url: str, tmp_path: Path, filename: str, content: bytes, status: int,
                                needle: str) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    got, body = await _post(base_url, path, account="acme", batch_id="up4")
    assert got == status and needle in body["error"]
    assert await Batch.get("up4") is None


async def test_upload_request_errors(base_url: str, make_file) -> None:
    path = make_file(COLLECTION, ROWS)
    status, body = await _post(base_url, path, account="acme")
    assert status == 400 and "batch_id" in body["error"]
    status, body = await _post(base_url, None, account="acme", batch_id="x")
    assert status == 400 and "'file'" in body["error"]
    status, body = await _post(base_url, path, account="acme", batch_id="x", call_settings={"max_attempts": 0})
    assert status == 422 and "max_attempts" in body["error"]
    status, body = await _post(base_url, path, account="acme", batch_id="x", call_settings="{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    async with aiohttp.ClientSession() as http, http.post(base_url, json={"a": 1}) as resp:
        assert resp.status == 400 and "multipart" in (await resp.json())["error"]


async def test_uploaded_settings_override_the_configured_defaults(db, tmp_path: Path, make_file) -> None:
    from speechai.domain.settings import CallSettings

    app = operator_app()
    defaults = CallSettings(max_attempts=9, timezone="America/New_York", holidays_country="US")
    app.add_routes(upload_routes(clock=SimClock(NOW), report_dir=tmp_path / "reports", default_settings=defaults))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/batches/upload"))
        status, body = await _post(url, make_file(COLLECTION, ROWS), account="acme", batch_id="d1",
                                   call_settings={"max_attempts": 2})
        assert status == 200, body
        status, body = await _post(url, make_file(COLLECTION, ROWS), account="acme", batch_id="d2",
                                   options={"allow_duplicates_across_batches": True})
        assert status == 200, body
    finally:
        await server.close()
    d1, d2 = await Batch.get("d1"), await Batch.get("d2")
    assert (d1.call_settings.max_attempts, d1.call_settings.timezone) == (2, "America/New_York")
    assert (d2.call_settings.max_attempts, d2.call_settings.timezone) == (9, "America/New_York")


async def test_an_oversized_or_too_deep_form_field_is_refused_cleanly(db, tmp_path) -> None:
    """A chunked upload declares no length: a huge settings field is cut off at the field limit (413), and
    JSON nested 60,000 deep is a 400, never a 500."""
    from speechai.api.upload import MAX_FIELD_BYTES

    app = operator_app(client_max_size=50 * 2**20)
    app.add_routes(upload_routes(clock=SimClock(NOW), report_dir=tmp_path))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            for value, status in (("x" * (MAX_FIELD_BYTES + 10), 413), ("[" * 60_000, 400)):
                form = aiohttp.FormData()
                form.add_field("account", "acme")
                form.add_field("call_settings", value)
                form.add_field("file", b"name,phone\n", filename="people.csv")  # makes the form multipart
                async with http.post(f"http://127.0.0.1:{port}/batches/upload", data=form, chunked=True) as resp:
                    assert resp.status == status, await resp.text()
                    assert "call_settings" in (await resp.json())["error"]
    finally:
        await runner.cleanup()
