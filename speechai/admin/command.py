"""The admin subcommands' runners: ``jobs reset``, ``jobs clean``, ``db indexes``, ``status``."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import structlog

from speechai.config import Config
from speechai.store.models import FINAL_STATES, JobState

log = structlog.get_logger("speechai.admin")
SHOWN = 20  # jobs listed one by one; the rest are counted
_DURATION = re.compile(r"(\d{1,6})\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, name: str = "--older-than") -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w``; ValueError naming the option and the value."""
    m = _DURATION.fullmatch(text.strip().lower())
    if m is None:
        raise ValueError(f"{name} must be a number and a unit (s, m, h, d, w), e.g. 7d or 12h; got {text!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def _bar(label: str, total: int, shown: bool):
    from speechai.admin.progress import Bar

    return Bar(label, total) if shown and total else None


async def run_reset(config: Config, *, state: str, batch: str | None, older_than: str | None, apply: bool,
                    clear_bad_phones: bool, progress: bool) -> int:
    from actors.clock import RealClock
    from speechai.admin.db import admin_database as database
    from speechai.admin.jobs import count_jobs, reset_jobs
    from speechai.api.audit import record_command

    age = parse_duration(older_than) if older_than else None
    wanted = JobState(state)
    now = RealClock().now()  # the command's edge: ages count from wall time
    async with database(config):
        bar = _bar("reading" if not apply else "resetting", await count_jobs((wanted,), batch), progress)
        result = await reset_jobs(wanted, batch=batch, older_than=age, now=now, apply=apply,
                                  clear_bad_phones=clear_bad_phones, progress=bar)
        if bar is not None:
            bar.done()
    verb = "reset" if apply else "would reset"
    for row in result.found[:SHOWN]:
        changed = row["updated_at"].strftime("%Y-%m-%d %H:%M UTC") if row["updated_at"] else "?"
        unusable = "" if row["usable_phones"] else "  (no usable phone: it will fail again; see --clear-bad-phones)"
        print(f"{verb} {row['job_id']}  batch {row['batch_id']}  {row['state']} -> pending  "
              f"(last change {changed}: {row['last_reason']}){unusable}")
    if len(result.found) > SHOWN:
        print(f"… and {len(result.found) - SHOWN} more")
    scope = f"batch {batch}" if batch else "all batches"
    age_text = f", last changed more than {older_than} ago" if older_than else ""
    if apply:
        print(f"reset {result.reset} {state} jobs of {scope}{age_text} to pending"
              + (f"; {result.skipped_changed} changed meanwhile and were left alone" if result.skipped_changed else ""))
        log.warning("admin_jobs_reset", state=state, batch=batch, older_than=older_than, reset=result.reset,
                    skipped=result.skipped_changed)
        async with database(config):
            await record_command("jobs.reset", f"speechai jobs reset --state {state} --apply", now,
                                 detail={"state": state, "batch": batch, "older_than": older_than,
                                         "reset": result.reset, "skipped_changed": result.skipped_changed})
    else:
        print(f"dry run: {len(result.found)} {state} jobs of {scope}{age_text} would be reset to pending; "
              "run again with --apply to change them")
    return 0


async def run_clean(config: Config, *, older_than_days: int, archive: Path | None, apply: bool,
                    progress: bool) -> int:
    from actors.clock import RealClock
    from speechai.admin.db import admin_database as database
    from speechai.admin.jobs import clean_jobs, count_jobs
    from speechai.api.audit import record_command

    if older_than_days < 1:
        raise ValueError(f"--older-than-days must be at least 1, got {older_than_days}")
    now = RealClock().now()  # the command's edge: ages count from wall time
    async with database(config):
        bar = _bar("archiving and deleting" if apply else "reading", await count_jobs(FINAL_STATES, None), progress)
        result = await clean_jobs(older_than=timedelta(days=older_than_days), now=now, apply=apply,
                                  archive=archive, progress=bar)
        if bar is not None:
            bar.done()
    states = ", ".join(f"{k} {v}" for k, v in sorted(result.by_state.items())) or "none"
    if not apply:
        fate = f"archived to {archive} and deleted" if archive else "deleted"
        print(f"dry run: {result.jobs} finished jobs last changed more than {older_than_days} days ago ({states}), "
              f"with {result.calls} call payloads, would be {fate}; "
              "live jobs (pending, retry, in flight, suspended) are never touched; run again with --apply")
        return 0
    print(f"deleted {result.deleted_jobs} finished jobs ({states}), {result.deleted_calls} call payloads and "
          f"{result.deleted_webhooks} webhook records" + (f"; archived to {archive}" if archive else "")
          + (f"; {result.kept_changed} changed meanwhile and were kept" if result.kept_changed else ""))
    log.warning("admin_jobs_cleaned", older_than_days=older_than_days, jobs=result.deleted_jobs,
                calls=result.deleted_calls, archive=str(archive) if archive else None)
    async with database(config):
        await record_command("jobs.clean", f"speechai jobs clean --older-than-days {older_than_days} --apply", now,
                             detail={"jobs": result.deleted_jobs, "calls": result.deleted_calls,
                                     "archive": str(archive) if archive else None})
    return 0


async def run_indexes(config: Config) -> int:
    from actors.clock import RealClock
    from speechai.admin.db import admin_database as database
    from speechai.admin.indexes import check_indexes
    from speechai.api.audit import record_command

    async with database(config):
        rows = await check_indexes()
        created = [r for r in rows if r.created]
        if created:  # a change to the database: in the audit log like the other admin writes
            await record_command("db.indexes", "speechai db indexes", RealClock().now(),
                                 detail={"created": [f"{r.collection}: {r.keys}" for r in created]})
    width = max(len(r.collection) for r in rows)
    for r in rows:
        status = ("created" if r.created else "ok" if r.present else "MISSING") if r.declared else (
            "default" if r.name == "_id_" else "extra")
        print(f"{r.collection:<{width}}  {status:<7}  {'unique ' if r.unique else ''}{r.keys}  [{r.name}]")
    missing = [r for r in rows if r.declared and not r.present]
    print(f"{sum(r.declared for r in rows)} declared indexes, {len(created)} created, {len(missing)} missing")
    return 1 if missing else 0


async def run_status(config: Config, *, as_json: bool) -> int:
    from actors.clock import RealClock
    from speechai.admin.db import admin_database as database
    from speechai.admin.status import read_status, render_status

    async with database(config, attach=True):  # read-only: works beside a running service
        status = await read_status(int(RealClock().now().timestamp() * 1000))  # leases are wall-clock ms
    print(json.dumps(status.to_dict(), indent=2) if as_json else render_status(status))
    return 0
