"""``speechai load``: load the ``[[batches]]`` of the config, with a progress bar and a summary each."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

from speechai.config import Config
from speechai.loader.errors import LoadError
from speechai.loader.progress import TextProgress
from speechai.loader.reader import estimate_rows
from speechai.loader.service import LoadSummary, load_batch

BAR_FROM_ROWS = 2000  # smaller files load faster than a bar can be read
SHOW_ERRORS = 20


def render_summary(summary: LoadSummary) -> str:
    status = "loaded" if summary.ok else "NOT loaded (all-or-nothing: fix the rows below or set accept_partial)"
    lines = [
        f"batch {summary.batch_id} ({summary.format}): {status}",
        f"  rows read {summary.rows}, people {summary.people}, jobs created {summary.jobs_created}, "
        f"already in batch {summary.already_present}, skipped as active in another batch "
        f"{summary.duplicates_skipped}",
    ]
    if summary.rejected:
        by_reason = Counter(str(e.reason) for e in summary.rejected)
        lines.append(f"  rejected rows {len({e.row for e in summary.rejected})}: "
                     + ", ".join(f"{r} {n}" for r, n in by_reason.most_common()))
        for e in summary.rejected[:SHOW_ERRORS]:
            lines.append(f"    row {e.row} [{e.column}] {e.value!r}: {e.reason} {e.detail}".rstrip())
        if len(summary.rejected) > SHOW_ERRORS:
            lines.append(f"    ... {len(summary.rejected) - SHOW_ERRORS} more in the report")
    if summary.warnings:
        lines.append(f"  phone numbers dropped as impossible: {len(summary.warnings)}")
    if summary.segments:
        lines.append("  segments: " + ", ".join(f"{name} {n}" for name, n in summary.segments.items()))
    lines.extend(f"  warning: {w}" for w in summary.segment_warnings)
    if summary.report_path:
        lines.append(f"  report: {summary.report_path}")
    return "\n".join(lines)


async def load_configured(config: Config, only: str | None = None, out: TextIO | None = None,
                          err: TextIO | None = None) -> int:
    """Exit status: 0 when every selected batch loaded, 1 otherwise. A file that cannot load at all is
    one line on ``err`` (stderr); summaries go to ``out``."""
    from speechai.runtime.service import database, make_clock

    out = out or sys.stdout
    err = err or sys.stderr
    sources = [s for s in config.batches if only is None or s.batch_id == only]
    if not sources:
        print(f"no [[batches]] entry{f' with batch_id {only!r}' if only else ''} in the config", file=out)
        return 1
    clock = make_clock(config)
    status = 0
    async with database(config):
        for source in sources:
            if "call_settings" not in source.model_fields_set:
                source = source.model_copy(update={"call_settings": config.call_settings})
            total = estimate_rows(source.file, source.sheet)
            bar = TextProgress(f"loading {source.batch_id}", total) if total and total >= BAR_FROM_ROWS else None
            try:
                summary = await load_batch(source, now=clock.now(), report_dir=config.data_dir / "reports",
                                           progress=bar, default_from_number=config.retell.from_number)
            except LoadError as exc:
                print(f"batch {source.batch_id}: NOT loaded: {exc}", file=err)
                status = 1
                continue
            finally:
                if bar is not None:
                    bar.done()
            print(render_summary(summary), file=out)
            status |= 0 if summary.ok else 1
    return status
