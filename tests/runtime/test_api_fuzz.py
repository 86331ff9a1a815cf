"""Every route of a running instance, driven over real HTTP with generated requests: never a 5xx, never a
dropped connection. And the process serving webhooks does not grow with the bodies thrown at it.

The routes come from the running app's own router (so a route added later is fuzzed without anyone
listing it), their query parameters from its /openapi.json. Each route gets a fixed pass (every declared
query parameter with each hostile value, valid token) and a hypothesis pass (any path segment, query,
header, body). The requests are raw HTTP/1.1 over sockets from a worker thread (so they can carry any
header bytes, any path and any body) while the instance serves in the test's event loop. Every failing
request is collected, with its exact bytes, rather than stopping at the first.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from actors.clock import SimClock
from speechai.domain.settings import CallSettings
from speechai.retell.signature import sign
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, Plan
from tests.runtime.conftest import SUNDAY
from tests.runtime.harness import API_KEY, Instance, Person, make_config, seed_batch
from tests.runtime.test_policy_e2e import TOKEN, drive

# The instance serves in this process while hypothesis draws in a worker thread: the service's own use of
# ``random`` (retry jitter) changes the global state mid-draw, which hypothesis reports as a deprecation.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

EXAMPLES_PER_ROUTE = 16
EXAMPLES_PER_HEAD = 4  # HEAD runs the GET route's handler: a few, for the bodiless answer
EXAMPLES_NO_ROUTE = 30  # the catch-all: any method, any path
ANSWER_TIMEOUT_S = 20
# Filters of the report routes (and "format", which they refuse), tried on every route besides its own.
REPORT_FILTERS = ("batch", "account", "from", "to", "format")
GENERIC_PARAMS = ("limit", "cursor", "account_id", "page")
# Routes the service is known to serve: the router iteration must at least find these.
MUST_BE_SERVED = {("GET", "/reports/summary"), ("GET", "/reports/summary.xlsx"), ("GET", "/metrics"),
                  ("GET", "/dashboard/summary"), ("GET", "/events"), ("GET", "/"), ("GET", "/docs"),
                  ("GET", "/openapi.json"), ("POST", "/batches/upload"), ("POST", "/webhooks/retell"),
                  ("GET", "/health"), ("PUT", "/batches/{batch_id}/settings"), ("*", "/{tail}")}
FIELD_NAMES = [*CallSettings.model_fields, "cents", "minutes", "key", "reason", "max_concurrent_calls",
               "daily_call_limit", "event", "call", "call_id", "metadata", "job_id", "limit", "cursor",
               "force", "role", "account_id", "batch_id", "rows", "name", "url", "events", "active", "state",
               "contact_id", "phone", "national_id", "status", "segments", "keys", "caller_ids", "use_case",
               "id", "plan", "user_id", "agent_id", "person_key", "outcome", "secret", "email"]
CSV = b"RUT,Nombre,Monto,Telefono\n11.111.111-1,Ana,1000,+56987654321\n"
# Query values meant to break a parser: control characters, bytes that are not UTF-8, a long string, a
# huge or non-finite number, deeply nested JSON, impossible dates.
HOSTILE_VALUES = [b"\x00", b"a\x01b", b"\x1b[2J\x7f", b"\xff\xfe", b"x" * 3000, b"9" * 400, b"NaN", b"1e999",
                  b"[" * 1000 + b"]" * 1000, b"2026-02-30"]
MORE_HOSTILE = [b"\x0b\x0c\x1f", b"-" + b"9" * 40, b"Infinity", b"-0", b'{"$ne":null}', b"99999-01-01",
                b"0000-00-00", b"x" * 9000, b"%00", b"\xed\xa0\x80"]  # 9000: past the request line limit
USUAL_VALUES = [b"", b"b1", b"acme", b"2026-03-01", b"2026-03-31", b"xlsx", b"json", b"0", b"1", b"1000",
                b"1001", b"-5", b"abc", b"YjE", b"_w", b"America/Santiago", b"queued", b"+56911112222",
                b"12.345.678-5"]
# An id for each path parameter in the fixed pass: the seeded records, so the handler goes past lookup.
SEEDED_IDS = {"batch_id": "b1", "account_id": "acme"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO"]
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


# --- the routes, from the running app ------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str  # "*" for the catch-all
    template: str  # aiohttp's canonical path: /batches/{batch_id}, /{tail}
    params: tuple[str, ...] = ()  # the query parameters /openapi.json declares for it

    @property
    def catch_all(self) -> bool:
        return self.method == "*"


def served(app: web.Application) -> set[tuple[str, str]]:
    """Every (method, path) the app's router dispatches, HEAD and the catch-all included."""
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}


def documented_ops(doc: dict[str, Any]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, path) -> its query parameters, from an OpenAPI document."""
    return {(method.upper(), path): tuple(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
            for path, ops in doc["paths"].items() for method, op in ops.items()}


def routes_to_fuzz(app: web.Application, doc: dict[str, Any]) -> list[Route]:
    ops = documented_ops(doc)
    return [Route(method, path, ops.get(("GET" if method == "HEAD" else method, path), ()))
            for method, path in sorted(served(app))]


# --- strategies -----------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["chile", "us_reg_f", "none", "09:00", "25:00", "2026-02-30", "America/Santiago", "+56911112222",
                     "12.345.678-5", "call_ended", "$ne", "\u0000", "\x01\x1b", "x" * 3000, "America", "Etc",
                     "https://127.0.0.1:1/h", "operator", "admin"]),
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
    kind = draw(st.sampled_from(["json", "object", "object", "webhook", "deep", "bigint", "constant", "surrogate",
                                 "bytes", "csv", "empty"]))
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
    if kind == "csv":  # e.g. the paid list of /accounts/{id}/paid, which takes text/csv
        rows = draw(st.lists(st.sampled_from([b"12.345.678-5", b"rut", b'"', b"\x00", b"x" * 2000, b",,,"])
                             | st.binary(max_size=30), max_size=5))
        return b"\n".join(rows)
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    return b""


def _pct(raw: bytes) -> str:
    return urllib.parse.quote_from_bytes(raw, safe="")


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def segments(ids: Iterable[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([*ids, "ghost", "0" * 24, "x" * 300, "%00", "..", "summary.xlsx"]),
        st.text(max_size=40).map(lambda t: _pct(_encoded(t))),
        st.binary(min_size=1, max_size=40).map(_pct),
    )


def queries(names: Iterable[str]) -> st.SearchStrategy[str]:
    name = st.sampled_from(sorted(set(names))).map(str.encode) | st.text(max_size=6).map(_encoded)
    value = st.sampled_from(HOSTILE_VALUES + MORE_HOSTILE + USUAL_VALUES) | st.text(max_size=12).map(_encoded)
    return st.lists(st.tuples(name, value), max_size=3).map(
        lambda pairs: "&".join(f"{_pct(k)}={_pct(v)}" for k, v in pairs))


# Header values as HTTP allows them (visible ASCII, space, tab, and any byte from 0x80: not UTF-8 at all) ...
FIELD_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
header_bytes = st.binary(max_size=80).map(lambda b: bytes(FIELD_BYTES[x % len(FIELD_BYTES)] for x in b))
# ... and control bytes HTTP does not allow (but CR/LF, which would end the header): the server refuses the
# request at once and closes, so these go with a small body, which it has read by then (no reset).
junk_header_bytes = st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
                                                          + b"\x01")
content_types = st.sampled_from([b"application/json", b"application/json", b"text/plain", b"text/csv", b"",
                                 b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=xx",
                                 b"application/json; charset=latin-1", b"multipart/form-data"]) | header_bytes
VALID_AUTH = f"Bearer {TOKEN}".encode()
# mostly the valid token, so most requests reach the handler rather than stop at the 401
auths = st.one_of(st.just(VALID_AUTH), st.just(VALID_AUTH), st.just(VALID_AUTH),
                  st.sampled_from([b"", b"Bearer wrong", b"Bearer \xff", b"Basic eDp5"]), header_bytes)


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
                                        "sheet", "segments", "agent_id", "from_number", "bogus"]),
                       bodies() | st.sampled_from([b"acme", b"u1", b"{}", b"\x00", b"x" * 600])),
             max_size=5),
    st.booleans(),
).map(lambda t: _multipart(*t))


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    sign: bool = False  # add a valid Retell signature of the body (at send time: it carries the time)


@st.composite
def requests(draw: st.DrawFn, route: Route, ids: tuple[str, ...]) -> Request:
    if route.catch_all:
        method = draw(st.sampled_from(METHODS))
        path = "/" + "/".join(draw(st.lists(segments(ids), max_size=4)))
    else:
        method = route.method
        path = _PATH_PARAM.sub(lambda _: draw(segments(ids)), route.template)
    query = draw(queries((*route.params, *REPORT_FILTERS, *GENERIC_PARAMS)))
    headers = [(b"Authorization", draw(auths)), (b"Content-Type", draw(content_types)),
               *draw(st.lists(st.tuples(st.sampled_from([b"X-Thing", b"Accept", b"Content-Encoding", b"Expect",
                                                         b"Last-Event-ID", b"Accept-Encoding"]), header_bytes),
                              max_size=2))]
    if route.template == "/batches/upload" and draw(st.booleans()):
        body, form_type = draw(upload_forms)
        headers[1] = (b"Content-Type", form_type)
    else:
        body = draw(bodies())
    junk = draw(st.none() | junk_header_bytes)
    if junk is not None:
        headers.append((b"X-Junk", junk))
        body = body[:1024]
    return Request(method, f"{path}?{query}" if query else path, tuple(headers), body,
                   sign=route.template == "/webhooks/retell" and draw(st.booleans()))


def fixed_requests(route: Route, ids: dict[str, str]) -> list[Request]:
    """Each query parameter the route declares (and the report filters on the report routes) with each
    hostile value, with a valid token and seeded ids, so the value reaches the handler's own parsing."""
    if route.catch_all or route.method == "HEAD":  # HEAD: the GET route's handler, fixed-tested there
        return []
    path = _PATH_PARAM.sub(lambda m: ids.get(m.group(1), "ghost"), route.template)
    names = [*route.params, *(REPORT_FILTERS if route.template.startswith("/reports/") else ())]
    body = b"{}" if route.method in ("POST", "PUT", "PATCH") else b""
    headers = ((b"Authorization", VALID_AUTH), (b"Content-Type", b"application/json"))
    return [Request(route.method, f"{path}?{_pct(name.encode())}={_pct(value)}", headers, body)
            for name in dict.fromkeys(names) for value in HOSTILE_VALUES]


# --- raw HTTP -------------------------------------------------------------------------------------


def _exchange(port: int, req: Request) -> bytes:
    """One request on a fresh connection; the answer's bytes."""
    headers = [*req.headers]
    if req.sign:
        headers.append((b"x-retell-signature", sign(req.body, API_KEY, int(time.time() * 1000)).encode()))
    head = f"{req.method} {req.target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    for name, value in headers:
        head += name + b": " + value + b"\r\n"
    head += f"Content-Length: {len(req.body)}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(head)
        # the body in pieces, stopping once the server has answered: it may refuse a body on its headers
        # and drain the rest only briefly (lingering time), after which a client still sending is reset
        for at in range(0, len(req.body), 2**16):
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(req.body[at:at + 2**16])
        answer = b""
        while not _complete(answer, req.method) and (chunk := sock.recv(65536)):
            answer += chunk
    return answer


def _complete(answer: bytes, method: str) -> bool:
    """Whether the answer is all there (the server may linger before closing, draining a body it refused).
    A stream (``text/event-stream``) counts as complete at its headers: its status is the answer."""
    top, end, rest = answer.partition(b"\r\n\r\n")
    if not end:
        return False
    if method == "HEAD" or re.search(rb"(?im)^content-type:\s*text/event-stream", top):
        return True
    if length := re.search(rb"(?im)^content-length:\s*(\d+)", top):
        return len(rest) >= int(length.group(1))
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", top):
        return rest.endswith(b"0\r\n\r\n")
    return False  # read to the close


def _describe(req: Request, outcome: str) -> str:
    return (f"{req.method} {req.target[:400]!r} headers={list(req.headers)!r} signed={req.sign} "
            f"body[:300]={req.body[:300]!r} ({len(req.body)} bytes) -> {outcome}")


def _check(port: int, req: Request, failures: list[str], statuses: Counter[int]) -> None:
    """A 5xx, a reset or a close without an answer is recorded (with the exact request)."""
    try:
        answer = _exchange(port, req)
    except OSError as exc:  # reset, broken pipe, timeout
        failures.append(_describe(req, f"{type(exc).__name__}: {exc}"))
        return
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    if match is not None:
        statuses[int(match.group(1))] += 1
    if match is None:
        failures.append(_describe(req, f"no HTTP answer: {answer[:200]!r}"))
    elif int(match.group(1)) >= 500:
        failures.append(_describe(req, answer.partition(b"\r\n")[0].decode("latin-1") + " "
                                  + answer.partition(b"\r\n\r\n")[2][:400].decode("utf-8", "replace")))


def _fuzz_route(port: int, route: Route, ids: dict[str, str], failures: list[str],
                fuzzed: set[tuple[str, str]], statuses: Counter[int]) -> None:
    for req in fixed_requests(route, ids):
        _check(port, req, failures, statuses)
    examples = EXAMPLES_NO_ROUTE if route.catch_all else EXAMPLES_PER_HEAD if route.method == "HEAD" \
        else EXAMPLES_PER_ROUTE
    sent = 0

    # no shrinking: a failure is recorded, not raised, so every 5xx of every route is reported at once
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(req=requests(route, tuple(ids.values())))
    def one(req: Request) -> None:
        nonlocal sent
        sent += 1
        _check(port, req, failures, statuses)

    one()
    if sent:
        fuzzed.add((route.method, route.template))


@pytest.fixture
async def fuzzed_instance(db, mongo_uri, tmp_path, monkeypatch) -> AsyncIterator[Callable[..., Any]]:
    """A running instance with an account, a batch and a job; runs ``body(instance, http, base, ids)``,
    ``ids`` mapping a path parameter's name to a seeded record's id."""
    monkeypatch.setenv("SPEECHAI_CONTROL_TOKEN", TOKEN)
    clock = SimClock(SUNDAY, speed=1)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=1) as sim:
        await Account(id="acme", plan=Plan.CREDITS, balance_cents=100).insert()
        [job] = await seed_batch("b1", [Person(["+56911112222"])], CallSettings(days_of_week=[1]), clock.now())
        ids = {**SEEDED_IDS, "job_id": str(job.id), "person_key": "+56911112222"}

        async def run(body: Callable[[Instance, aiohttp.ClientSession, str, dict[str, str]], Any],
                      within: float) -> None:
            await drive(db, make_config(db, mongo_uri, tmp_path), clock, sim,
                        lambda inst, http, base: body(inst, http, base, ids), within=within)

        yield run


async def _document(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/openapi.json") as r:
        assert r.status == 200
        doc: dict[str, Any] = await r.json()
        return doc


async def test_the_fuzzed_routes_are_every_route_the_app_serves(fuzzed_instance) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, ids: dict[str, str]) -> None:
        doc = await _document(http, base)
        routes = served(inst.api.app)
        assert MUST_BE_SERVED <= routes, MUST_BE_SERVED - routes
        assert {(r.method, r.template) for r in routes_to_fuzz(inst.api.app, doc)} == routes
        # every route but the automatic HEADs and the catch-all is in the document, and nothing else is
        assert {(m, p) for m, p in routes if m not in ("HEAD", "*")} == set(documented_ops(doc))
        # the report routes' filters are read from the document, not listed here
        assert {"batch", "account", "from", "to"} <= set(documented_ops(doc)["GET", "/reports/summary.xlsx"])

    await fuzzed_instance(body, within=30)


async def test_no_route_answers_5xx_to_generated_requests(fuzzed_instance) -> None:
    async def body(inst: Instance, http: aiohttp.ClientSession, base: str, ids: dict[str, str]) -> None:
        port = inst.api.port
        assert port is not None
        # every generated request must reach its route, not stop at the per-key rate limit
        inst.api.limiter.rate, inst.api.limiter.burst = 1e9, 10**9
        routes = routes_to_fuzz(inst.api.app, await _document(http, base))
        failures: list[str] = []
        fuzzed: set[tuple[str, str]] = set()
        statuses: Counter[int] = Counter()
        started = time.monotonic()
        for route in routes:
            await anyio.to_thread.run_sync(_fuzz_route, port, route, ids, failures, fuzzed, statuses)
        print(f"fuzzed {len(fuzzed)} routes in {time.monotonic() - started:.0f} s: {sorted(statuses.items())}")
        assert fuzzed == served(inst.api.app)
        # the requests got past the door: handlers answered, accepting some and refusing others by name
        assert {200, 401, 404, 422} <= set(statuses), statuses
        async with http.get(f"{base}/health") as r:  # still serving
            assert r.status == 200
        async with http.get(f"{base}/accounts/acme") as r:
            assert r.status == 200
        assert not failures, f"{len(failures)} failing requests:\n" + "\n".join(failures[:60])

    await fuzzed_instance(body, within=150)


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
