"""``speechai report``: the campaign report from the database, in the terminal or to a file."""

from __future__ import annotations

import sys
from pathlib import Path

from speechai.admin.db import admin_database, demo_instead
from speechai.config import Config
from speechai.reports.data import build_report
from speechai.reports.render import render_json, render_markdown, render_terminal
from speechai.reports.routes import report_filter
from speechai.reports.xlsx import write_xlsx
from speechai.store.models import Account, Batch

FORMATS = ("terminal", "markdown", "json", "xlsx")


def demo_fallback(config: Config) -> bool:
    """With the embedded database and none under ``data_dir`` yet, the demo's (``<data_dir>/demo``); the
    rest of the choice (an empty database of its own, a running service) is ``admin_database``'s, shared
    with the admin commands."""
    return demo_instead(config)


async def check_scope(batch: str | None, account: str | None) -> None:
    """ValueError for a batch or account the database does not know (a typo would read as an empty report)."""
    if batch is not None and await Batch.get_pymongo_collection().find_one({"_id": batch}, {"_id": 1}) is None:
        raise ValueError(f"no batch {batch!r}")
    if account is not None and await Account.get_pymongo_collection().find_one({"_id": account}, {"_id": 1}) is None \
            and await Batch.get_pymongo_collection().find_one({"account_id": account}, {"_id": 1}) is None:
        raise ValueError(f"no account {account!r}")


async def run_report(config: Config, *, fmt: str, out: Path | None, batch: str | None, account: str | None,
                     date_from: str | None, date_to: str | None) -> int:
    from actors.clock import RealClock
    from speechai.loader.progress import TextProgress

    flt = report_filter(batch, account, date_from, date_to)
    if fmt == "xlsx" and out is None:
        out = Path(f"speechai-report-{batch or account or 'all'}.xlsx")
    progress = TextProgress("reading jobs") if sys.stderr.isatty() else None

    def on_jobs(n: int) -> None:
        if progress is not None:
            progress(n)

    async with admin_database(config, attach=True):  # read-only: may read through a running service
        await check_scope(flt.batch, flt.account)
        report = await build_report(flt, RealClock().now(), on_jobs=on_jobs)
    if progress is not None:
        progress.done()
    if fmt == "xlsx":
        assert out is not None
        write_xlsx(report, out)
        print(f"report written to {out}", file=sys.stderr)
        return 0
    text = {"terminal": render_terminal, "markdown": render_markdown, "json": render_json}[fmt](report)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        print(f"report written to {out}", file=sys.stderr)
    return 0
