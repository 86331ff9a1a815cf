"""Generated spreadsheets for the loader tests (fictitious people only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from loader_data import NOW
from upload_client import operator_app

from actors.clock import SimClock
from speechai.api.upload import upload_routes
from speechai.loader.spec import BatchSource
from speechai.loader.synthetic import write_csv, write_xlsx


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10_000))

    def make(headers: list[str], rows: list[list[object]], kind: str = "xlsx", **kw: object) -> Path:
        path = tmp_path / f"f{next(counter)}.{kind}"
        if kind == "xlsx":
            return write_xlsx(path, headers, rows)
        return write_csv(path, headers, rows, **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture
def source(tmp_path: Path) -> Callable[..., BatchSource]:
    def make(path: Path, batch_id: str = "b1", account: str = "acme", **kw: object) -> BatchSource:
        return BatchSource(file=path, account=account, batch_id=batch_id, **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    return tmp_path / "reports"


@pytest.fixture
async def upload_url(db, tmp_path: Path) -> AsyncIterator[str]:
    """``POST /batches/upload`` served over real HTTP on loopback, backed by the embedded server."""
    app = operator_app()
    app.add_routes(upload_routes(clock=SimClock(NOW), report_dir=tmp_path / "reports"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/batches/upload"))
    finally:
        await server.close()

