"""Bad requests to a running instance's control endpoint get a JSON error naming the problem; nothing changes.

Each case goes over real HTTP to a runtime started in-process (embedded MongoDB, simulator).
"""

from __future__ import annotations

import io

import aiohttp
import anyio
import pytest

from speechai.store.models import Account, Batch, DoNotCall, Job

CSV = b"RUT,Nombre,Monto,Telefono\n11.111.111-1,Ana,1000,+56987654321\n"


@pytest.fixture
def running(control_instance):
    return lambda body: control_instance(lambda inst, http, base, job: body(http, base))


async def _error(resp: aiohttp.ClientResponse) -> str:
    # RFC 9457 problem details; ``error`` repeats ``detail`` for earlier clients
    assert resp.content_type == "application/problem+json", await resp.text()
    got = await resp.json()
    assert got["detail"] == got["error"] and got["status"] == resp.status, got
    return got["error"]


async def test_bodies_that_are_not_utf8_json_are_400(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        for method, path in (("PUT", "/batches/b1/settings"), ("POST", "/accounts/acme/topup"),
                             ("POST", "/accounts/acme/do-not-call")):
            async with http.request(method, f"{base}{path}", data=b'\xff\xfe{"cents": 5}',
                                    headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400, path
                assert "JSON" in await _error(r)
        assert (await Batch.get("b1")).call_settings.days_of_week == [1]

    await running(body)


async def test_settings_body_must_be_an_object(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        for payload in (b"[1, 2]", b'"chile"', b"null"):
            async with http.put(f"{base}/batches/b1/settings", data=payload,
                                headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400, payload
                assert "JSON object" in await _error(r)
        assert (await Batch.get("b1")).call_settings.days_of_week == [1]

    await running(body)


async def test_top_up_refuses_huge_unknown_or_empty_amounts(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        for payload, needle in (({"cents": 10**23}, "cents"), ({"minutes": 10**17}, "minutes"),
                                ({"centz": 500}, "centz"), ({}, "cents"), ({"cents": 0}, "cents")):
            async with http.post(f"{base}/accounts/acme/topup", json=payload) as r:
                assert r.status == 422, payload
                error = await _error(r)
                assert needle in error, (payload, error)
        account = await Account.get("acme")
        assert (account.balance_cents, account.minutes_balance_ms) == (100, 0)

    await running(body)


async def test_do_not_call_keys_are_checked_and_normalized(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        for payload, needle in (({"key": "abc"}, "'abc'"), ({"key": "12.345.678-9"}, "12.345.678-9"),
                                ({"key": "+56911112222", "reason": {"a": 1}}, "reason"),
                                ({"key": "+56911112222", "reasn": "x"}, "reasn")):
            async with http.post(f"{base}/accounts/acme/do-not-call", json=payload) as r:
                assert r.status == 422, payload
                assert needle in await _error(r), payload
        assert await DoNotCall.find({"account_id": "acme"}).count() == 0
        # written as a spreadsheet or a person would: stored as the loader stores people
        for key, stored in (("12.345.678-5", "12345678-5"), ("+56 9 8765 4321", "+56987654321"),
                            ("987654321", "+56987654321")):
            async with http.post(f"{base}/accounts/acme/do-not-call", json={"key": key}) as r:
                assert r.status in (200, 201), key
                assert (await r.json())["key"] == stored, key
        assert sorted(e.key for e in await DoNotCall.find({"account_id": "acme"}).to_list()) == [
            "+56987654321", "12345678-5"]

    await running(body)


async def test_unknown_ids_are_named(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        for path, status, needle in (("/jobs/not-an-id", 400, "not-an-id"), ("/jobs/" + "0" * 24, 404, "0" * 24),
                                     ("/accounts/ghost", 404, "ghost"), ("/batches/ghost", 404, "ghost")):
            async with http.get(f"{base}{path}") as r:
                assert r.status == status, path
                assert needle in await _error(r), path
        assert await Job.find({}).count() == 1

    await running(body)


async def _upload(http: aiohttp.ClientSession, base: str, fields: dict[str, str], content: bytes = CSV,
                  filename: str = "people.csv") -> tuple[int, dict]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("file", content, filename=filename, content_type="text/csv")
    async with http.post(f"{base}/batches/upload", data=form) as r:
        # success as JSON; every error as problem details (the endpoint reshapes the loader's)
        assert r.content_type == ("application/json" if r.status < 400 else "application/problem+json"), await r.text()
        return r.status, await r.json()


async def test_upload_refuses_unknown_fields_and_names_values(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        status, got = await _upload(http, base, {"account": "acme", "batch_id": "u1",
                                                 "call_setting": '{"max_attempts": 1}'})
        assert status == 400 and "call_setting" in got["error"]
        status, got = await _upload(http, base, {"account": "acme", "batch_id": "u1",
                                                 "call_settings": '{"max_attempts": "lots"}'})
        assert status == 422 and "call_settings.max_attempts" in got["error"] and "'lots'" in got["error"]
        assert await Batch.get("u1") is None

    await running(body)


async def test_upload_with_broken_multipart_or_text_is_400(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        async with http.post(f"{base}/batches/upload", data=b"garbage",
                             headers={"Content-Type": "multipart/form-data; boundary=xx"}) as r:
            assert r.status == 400
            assert "multipart" in await _error(r)
        form = aiohttp.FormData()
        form.add_field("account", io.BytesIO(b"\xff\xfe"), content_type="text/plain")
        form.add_field("batch_id", "u1")
        form.add_field("file", CSV, filename="people.csv", content_type="text/csv")
        async with http.post(f"{base}/batches/upload", data=form) as r:
            assert r.status == 400
            assert "account" in await _error(r)
        assert await Batch.get("u1") is None

    await running(body)


async def test_upload_of_a_header_only_file_creates_no_batch(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        status, got = await _upload(http, base, {"account": "acme", "batch_id": "u1"},
                                    content=b"RUT,Nombre,Monto,Telefono\n")
        assert status == 422 and "no data rows" in got["error"]
        assert await Batch.get("u1") is None

    await running(body)


async def test_instance_serves_on_after_bad_requests(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        async with http.post(f"{base}/accounts/acme/topup", json={"cents": 10**30}) as r:
            assert r.status == 422
        async with http.post(f"{base}/accounts/acme/topup", json={"cents": 50}) as r:
            assert r.status == 200 and (await r.json())["balance_cents"] == 150

    await running(body)




async def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as given (any bytes) and return the status and body of the answer."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        answer = b""
        with anyio.fail_after(10):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_authorization_header_with_any_bytes_is_401(control_instance) -> None:
    async def body(inst, http: aiohttp.ClientSession, base: str, job) -> None:
        for value in (b"Bearer \xff", b"Bearer \xc3\x28", b"\x80\x81", b"Bearer " + b"\xfe" * 4000,
                      b"Bearer policy-test-token\xff", b"Basic abc"):
            status, answer = await _raw(inst.api.port, b"GET /batches HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                                       b"Authorization: " + value + b"\r\n\r\n")
            assert status == 401, value[:20]
            assert b"token" in answer
        async with http.get(f"{base}/health") as r:
            assert r.status == 200

    await control_instance(body)


def _deep(levels: int) -> bytes:
    return b'{"a": ' * levels + b"1" + b"}" * levels


async def test_deeply_nested_json_is_400_everywhere(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        for levels in (40, 100_000):
            for method, path in (("PUT", "/batches/b1/settings"), ("PATCH", "/batches/b1/settings"),
                                 ("POST", "/accounts/acme/topup"), ("POST", "/accounts/acme/do-not-call"),
                                 ("PATCH", "/accounts/acme/settings")):
                async with http.request(method, f"{base}{path}", data=_deep(levels),
                                        headers={"Content-Type": "application/json"}) as r:
                    assert r.status == 400, (path, levels)
                    assert "nested deeper" in await _error(r), (path, levels)
            for name in ("call_settings", "options"):
                status, got = await _upload(http, base, {"account": "acme", "batch_id": "u1",
                                                         name: _deep(levels).decode()})
                # the upload's own checks refuse a deep but parseable field; past the parser's depth, 400, or
                # 413 when the field is past the loader's form-field size limit
                deep_refused = (status == 400 and "JSON" in got["error"]) or status == 413
                assert deep_refused if levels > 1000 else status in (400, 422), (name, levels, got)
        assert await Batch.get("u1") is None
        assert (await Account.get("acme")).balance_cents == 100

    await running(body)


async def test_non_numbers_and_huge_bodies_are_refused(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        for raw in (b'{"cents": NaN}', b'{"cents": Infinity}', b'{"cents": -Infinity}', b'{"cents": 1e400}',
                    b'{"cents": ' + b"9" * 5000 + b"}", b'{"cents": "\\ud800"}', b'{"\\u0000": 1}', b""):
            async with http.post(f"{base}/accounts/acme/topup", data=raw,
                                 headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400, raw[:30]
                assert "JSON" in await _error(r)
        big = b'{"reason": "' + b"x" * (2 * 2**20) + b'", "key": "+56911112222"}'
        async with http.post(f"{base}/accounts/acme/do-not-call", data=big,
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413 and "limit" in await _error(r)

        async def chunked():  # no Content-Length: the cap applies while reading
            for _ in range(40):
                yield b"x" * 65536

        async with http.post(f"{base}/accounts/acme/do-not-call", data=chunked(),
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413
        assert (await Account.get("acme")).balance_cents == 100
        assert await DoNotCall.find({"account_id": "acme"}).count() == 0

    await running(body)


async def test_settings_with_bad_values_are_422_with_problems_never_500(running) -> None:
    async def body(http: aiohttp.ClientSession, base: str) -> None:
        cases = [{"max_attempts": 10**30}, {"daily_quota": 2**70}, {"allowed_hours": [{"start": "25:00", "end": "x"}]},
                 {"allowed_hours": "09:00-18:00"}, {"days_of_week": [{"a": 1}]}, {"closed_dates": ["2026-02-30"]},
                 {"waves": [10**20]}, {"timezone": "\u0000"}, {"holidays_country": ["CL"]},
                 {"retry_delay_min": {"no_answer": -1}}, {"retry_delay_min": 5}, {"person_policy": {"x": 1}},
                 {"preset": "mars"}, {"preset": None, "nonsense": True}, {"priority": 1.5},
                 {"extra_holiday_countries": ["ZZ"] * 500}]
        for method in ("PUT", "PATCH"):
            for payload in cases:
                async with http.request(method, f"{base}/batches/b1/settings", json=payload) as r:
                    assert r.status == 422, (method, payload, await r.text())
                    problems = (await r.json())["problems"]
                    assert problems and all("field" in p and "error" in p for p in problems), payload
        assert (await Batch.get("b1")).call_settings.days_of_week == [1]

    await running(body)
