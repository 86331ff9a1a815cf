"""Every route of a running instance, driven over real HTTP with generated requests: never a 5xx, never a
dropped connection. And the process serving webhooks does not grow with the bodies thrown at it.

The fuzzing runs hypothesis in a worker thread that speaks raw HTTP/1.1 over sockets (so it can send any
header bytes, any path and any body), while the instance serves in the test's event loop.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.signature import sign
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, Plan
from tests.runtime.conftest import SUNDAY
from tests.runtime.harness import API_KEY, Instance, Person, make_config, seed_batch
from tests.runtime.test_policy_e2e import TOKEN, drive

EXAMPLES_PER_ROUTE = 25
ROUTES = [
    ("GET", "/health"), ("GET", "/batches"), ("GET", "/batches/{id}"), ("POST", "/batches/{id}/pause"),
    ("POST", "/batches/{id}/resume"), ("PUT", "/batches/{id}/settings"), ("PATCH", "/batches/{id}/settings"),
    ("GET", "/jobs/{id}"), ("GET", "/accounts/{id}"), ("PUT", "/accounts/{id}/settings"),
    ("PATCH", "/accounts/{id}/settings"), ("POST", "/accounts/{id}/topup"), ("GET", "/accounts/{id}/do-not-call"),
    ("POST", "/accounts/{id}/do-not-call"), ("POST", "/webhooks/retell"), ("POST", "/batches/upload"),
    ("GET", "/jobs"), ("GET", "/jobs/{id}/attempts"), ("POST", "/jobs/{id}/retry"), ("POST", "/jobs/{id}/cancel"),
    ("POST", "/batches"), ("POST", "/batches/{id}/cancel"), ("GET", "/accounts"), ("GET", "/keys"),
    ("POST", "/keys"), ("DELETE", "/keys/{id}"), ("GET", "/audit"),
    ("GET", "/webhooks/subscriptions"), ("POST", "/webhooks/subscriptions"), ("GET", "/webhooks/subscriptions/{id}"),
    ("PATCH", "/webhooks/subscriptions/{id}"), ("DELETE", "/webhooks/subscriptions/{id}"),
    ("POST", "/webhooks/subscriptions/{id}/replay"), ("GET", "/webhooks/deliveries"),
    ("POST", "/webhooks/deliveries/{id}/replay"), ("GET", "/outbox/events"), ("POST", "/crm/contacts"),
    ("POST", "/crm/opportunities"), ("GET", "/crm/opportunities"), ("POST", "/agents"), ("GET", "/agents"),
    ("POST", "/agent-calls"), ("POST", "/agent-calls/{id}/end"), ("GET", "/agent-calls"), ("GET", "/agents/metrics"),
    ("GET", "/people/{id}/calls"), ("GET", "/batches/{id}/segments"), ("PUT", "/batches/{id}/segments"),
    ("PATCH", "/batches/{id}/dialing"), ("POST", "/accounts/{id}/paid"),
]
FIELD_NAMES = [*CallSettings.model_fields, "cents", "minutes", "key", "reason", "max_concurrent_calls",
               "daily_call_limit", "event", "call", "call_id", "metadata", "job_id", "limit", "cursor",
               "force", "role", "account_id", "batch_id", "rows", "name", "url", "events", "active", "state",
               "contact_id", "phone", "national_id", "status", "segments", "keys", "caller_ids", "use_case"]
CSV = b"RUT,Nombre,Monto,Telefono\n11.111.111-1,Ana,1000,+56987654321\n"

# --- strategies -----------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["chile", "us_reg_f", "none", "09:00", "25:00", "2026-02-30", "America/Santiago", "+56911112222",
                     "12.345.678-5", "call_ended", "$ne", "\u0000", "x" * 3000]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


webhook_payloads = st.fixed_dictionaries({
    "event": st.sampled_from(["call_started", "call_ended", "call_analyzed", "transcript_updated"]) | json_values,
    "call": st.fixed_dictionaries(
        {"call_id": st.sampled_from(["call_fuzz1", "call_fuzz2"]) | json_values},
        optional={"metadata": json_values | st.fixed_dictionaries(
                      {}, optional={k: st.sampled_from(["j1", "a1", "b1", "acme"]) | json_values
                                    for k in ("job_id", "attempt_id", "batch_id", "account_id")}),
                  "call_status": json_values, "duration_ms": json_values, "call_analysis": json_values}),
})


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "object", "webhook", "deep", "bigint", "constant", "surrogate", "bytes",
                                 "empty"]))
    if kind == "webhook":
        return json.dumps(draw(webhook_payloads)).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "object":
        return json.dumps(draw(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6))).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([31, 33, 200, 5_000, 100_000]))
        opener = draw(st.sampled_from([b"[", b'{"a":', b'{"call_settings":']))
        closer = b"]" if opener == b"[" else b"}"
        return opener * depth + b"1" + closer * depth
    if kind == "bigint":
        return b'{"cents": ' + b"9" * draw(st.sampled_from([19, 20, 400, 4301, 6000])) + b"}"
    if kind == "constant":
        return b'{"cents": ' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"])) + b"}"
    if kind == "surrogate":
        return b'{"key": "\\ud800", "reason": "\\udfff", "\\udc00": 1}'
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    return b""


def _pct(raw: bytes) -> str:
    return urllib.parse.quote_from_bytes(raw, safe="")


segments = st.one_of(
    st.sampled_from(["b1", "acme", "ghost", "0" * 24, "x" * 300]),
    st.text(max_size=40).map(lambda t: _pct(t.encode("utf-8", "surrogatepass"))),
    st.binary(min_size=1, max_size=40).map(_pct),
)
queries = st.lists(
    st.tuples(st.sampled_from(["limit", "cursor", "page", "x"]) | st.text(max_size=6),
              st.sampled_from(["0", "1", "1000", "1001", "-5", "abc", "YjE", "_w", "%%"]) | st.text(max_size=12)),
    max_size=3,
).map(lambda pairs: "&".join(f"{_pct(k.encode('utf-8', 'surrogatepass'))}="
                             f"{_pct(v.encode('utf-8', 'surrogatepass'))}" for k, v in pairs))
# Header values as HTTP allows them (visible ASCII, space, tab, and any byte from 0x80: not UTF-8 at all) ...
FIELD_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
header_bytes = st.binary(max_size=80).map(lambda b: bytes(FIELD_BYTES[x % len(FIELD_BYTES)] for x in b))
# ... and control bytes HTTP does not allow (but CR/LF, which would end the header): the server refuses the
# request at once and closes, so these go with a small body, which it has read by then (no reset).
junk_header_bytes = st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
                                                          + b"\x01")
content_types = st.sampled_from([b"application/json", b"text/plain", b"", b"application/x-www-form-urlencoded",
                                 b"multipart/form-data; boundary=xx", b"application/json; charset=latin-1",
                                 b"multipart/form-data"]) | header_bytes
auths = st.sampled_from([f"Bearer {TOKEN}".encode(), b"", b"Bearer wrong", b"Bearer \xff"]) | header_bytes


def _multipart(fields: list[tuple[str, bytes]], with_file: bool) -> tuple[bytes, bytes]:
    boundary = b"fuzzboundary7"
    out = b""
    for name, value in fields:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        out += value + b"\r\n"
    if with_file:
        out += (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n'
                b"Content-Type: text/csv\r\n\r\n" + CSV + b"\r\n")
    return out + b"--" + boundary + b"--\r\n", b"multipart/form-data; boundary=" + boundary


upload_forms = st.tuples(
    st.lists(st.tuples(st.sampled_from(["account", "batch_id", "format", "call_settings", "options", "name",
                                        "sheet", "bogus"]), bodies() | st.sampled_from([b"acme", b"u1", b"{}"])),
             max_size=5),
    st.booleans(),
).map(lambda t: _multipart(*t))


# --- raw HTTP -------------------------------------------------------------------------------------


def _request(port: int, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """One request on a fresh connection; the answer's status. A reset or a silent close fails the test."""
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    for name, value in headers:
        head += name + b": " + value + b"\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, f"no HTTP answer to {method} {target[:80]}: {answer[:200]!r}"
    return int(match.group(1))


def _fuzz_route(port: int, method: str, template: str) -> None:
    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(segment=segments, query=queries, body=bodies(), content_type=content_types, auth=auths,
           extra=st.lists(st.tuples(st.sampled_from([b"X-Thing", b"Accept", b"Content-Encoding", b"Expect"]),
                                    header_bytes), max_size=2),
           sign_it=st.booleans(), form=upload_forms, use_form=st.booleans(), junk=st.none() | junk_header_bytes)
    def one(segment: str, query: str, body: bytes, content_type: bytes, auth: bytes,
            extra: list[tuple[bytes, bytes]], sign_it: bool, form: tuple[bytes, bytes], use_form: bool,
            junk: bytes | None) -> None:
        path = template.replace("{id}", segment)
        headers = [(b"Authorization", auth), (b"Content-Type", content_type), *extra]
        if template == "/batches/upload" and use_form:
            body, form_type = form
            headers[1] = (b"Content-Type", form_type)
        if junk is not None:
            headers.append((b"X-Junk", junk))
            body = body[:1024]
        if template == "/webhooks/retell" and sign_it:
            headers.append((b"x-retell-signature", sign(body, API_KEY, int(time.time() * 1000)).encode()))
        status = _request(port, method, f"{path}?{query}" if query else path, headers, body)
        assert status < 500, (method, path, query, body[:200], headers, status)

    one()


@pytest.fixture
async def fuzzed_instance(db, mongo_uri, tmp_path, monkeypatch) -> AsyncIterator[Callable[..., Any]]:
    """A running instance with an account, a batch and a job; runs ``body(instance, http, base)``."""
    monkeypatch.setenv("SPEECHAI_CONTROL_TOKEN", TOKEN)
    clock = SimClock(SUNDAY, speed=1)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=1) as sim:
        await Account(id="acme", plan=Plan.CREDITS, balance_cents=100).insert()
        await seed_batch("b1", [Person(["+56911112222"])], CallSettings(days_of_week=[1]), clock.now())

        async def run(body: Callable[[Instance, aiohttp.ClientSession, str], Any], within: float) -> None:
            await drive(db, make_config(db, mongo_uri, tmp_path), clock, sim, body, within=within)

        yield run


async def test_no_route_answers_5xx_to_generated_requests(fuzzed_instance) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str) -> None:
        port = inst.api.port
        assert port is not None
        # every generated request must reach its route, not stop at the per-key rate limit
        inst.api.limiter.rate, inst.api.limiter.burst = 1e9, 10**9
        for method, template in ROUTES:
            await anyio.to_thread.run_sync(_fuzz_route, port, method, template)
        async with http.get(f"{base}/health") as r:  # still serving
            assert r.status == 200
        async with http.get(f"{base}/accounts/acme") as r:
            assert r.status == 200

    await fuzzed_instance(body, within=120)


# --- memory: large unsigned webhook bodies ----------------------------------------------------------


def _vm_hwm_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def _start_service(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    data = tmp_path / "svc"
    data.mkdir()
    config = data / "config.toml"
    config.write_text(f'data_dir = "{data}"\n[control]\nport = 0\n[runtime]\nclock = "simulated"\n'
                      '[logging]\nformat = "json"\n')
    log = data / "service.log"
    env = {**os.environ, "RETELL_API_KEY": API_KEY, "SPEECHAI_CONTROL_TOKEN": TOKEN}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "speechai.cli", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        if found := re.search(r'"control_port": (\d+)', log.read_text()):
            return proc, int(found.group(1)), log
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"service did not start: {log.read_text()[-3000:]}")


async def test_large_unsigned_webhook_bodies_do_not_grow_the_service(tmp_path: Path) -> None:
    proc, port, log = _start_service(tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/webhooks/retell"
        chunk = b"x" * 2**20
        body = chunk * 60  # one 60 MiB body, shared by every post of this client

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: refused on the header alone
            for _ in range(60):
                yield chunk

        async with aiohttp.ClientSession() as http:
            for _ in range(3):  # warm up the route, so the baseline includes its code paths
                async with http.post(url, data=b"{}") as r:
                    assert r.status == 401
            before = _vm_hwm_kib(proc.pid)

            async def post(i: int) -> int:
                data = body if i % 2 else chunked()
                async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
                    return r.status

            statuses: list[int] = []

            async def run(i: int) -> None:
                statuses.append(await post(i))

            with anyio.fail_after(90):
                async with anyio.create_task_group() as tg:
                    for i in range(8):
                        tg.start_soon(run, i)
        growth_mb = (_vm_hwm_kib(proc.pid) - before) / 1024
        print(f"service peak RSS {before / 1024:.0f} MB before, grew by {growth_mb:.1f} MB")
        assert sorted(set(statuses)) == [401, 413], statuses
        assert len(statuses) == 8
        assert growth_mb < 50, f"peak RSS grew by {growth_mb:.0f} MB: {log.read_text()[-2000:]}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
