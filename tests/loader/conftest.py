"""Generated spreadsheets for the loader tests (fictitious people only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

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
