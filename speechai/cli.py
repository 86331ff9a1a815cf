"""``speechai`` command: run, demo, load, simulator, report, jobs, db, paid, status, check-config."""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import anyio
from pymongo.errors import PyMongoError

from speechai.config import Config, ConfigError, load_config
from speechai.logs import configure_logging
from speechai.store.embedded import EmbeddedServerError

DEFAULT_CONFIG = Path("config.toml")
# A Monday morning in Santiago: the demo campaign starts just before its first window opens.
DEMO_START = datetime.fromisoformat("2026-03-02T08:50:00-03:00")


def _config(args: argparse.Namespace) -> Config:
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    return load_config(path)


def _log_setup(config: Config, *, to_file: bool = False) -> None:
    file = config.logging.file or (str(config.data_dir / "speechai.log") if to_file else "")
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
    configure_logging(config.logging.level, config.logging.format, file)


def cmd_run(args: argparse.Namespace) -> int:
    from speechai.runtime.service import run_instance, tune_gc

    config = _config(args)
    if config.retell.base_url and not config.retell_api_key:
        raise ConfigError(f"retell.base_url is {config.retell.base_url!r} but RETELL_API_KEY is not in the "
                          "environment (leave base_url empty to run against the simulator)")
    _log_setup(config)
    tune_gc()  # the service process only: the heap of thousands of call actors
    anyio.run(lambda: run_instance(config, until_done=args.until_done))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from speechai.runtime.demo import run_demo

    config = _config(args)
    config.data_dir = config.data_dir / "demo"
    if config.data_dir.exists():
        shutil.rmtree(config.data_dir)  # every demo starts from an empty campaign
    config.data_dir.mkdir(parents=True)
    config.retell.base_url = ""
    config.runtime.clock = "simulated"
    config.runtime.sim_start = config.runtime.sim_start or DEMO_START
    config.runtime.sim_speed = args.speed
    config.control.port = 0
    _log_setup(config, to_file=True)
    if not config.batches:
        print("config has no [[batches]] to run", file=sys.stderr)
        return 2
    return anyio.run(run_demo, config)


def cmd_load(args: argparse.Namespace) -> int:
    from speechai.loader.command import load_configured

    config = _config(args)
    _log_setup(config, to_file=True)
    return anyio.run(lambda: load_configured(config, only=args.batch))


def cmd_simulator(args: argparse.Namespace) -> int:
    from speechai.retell.simulator import run_from_args

    try:
        anyio.run(run_from_args, args)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    print(config.model_dump_json(indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from speechai.reports.command import demo_fallback, run_report

    config = _config(args)
    if args.demo or demo_fallback(config):
        config.data_dir = config.data_dir / "demo"
        print(f"reading the demo's database under {config.data_dir}", file=sys.stderr)
    _log_setup(config, to_file=True)
    try:
        return anyio.run(lambda: run_report(config, fmt=args.format, out=args.out, batch=args.batch,
                                            account=args.account, date_from=args.date_from, date_to=args.date_to))
    except ValueError as exc:
        print(f"speechai report: {exc}", file=sys.stderr)
        return 2


def cmd_keys(args: argparse.Namespace) -> int:
    from speechai.api.keys_command import run_keys

    config = _config(args)
    return anyio.run(lambda: run_keys(config, args.keys_action, role=getattr(args, "role", None),
                                      account=getattr(args, "account", None), name=getattr(args, "name", ""),
                                      key_id=getattr(args, "key_id", None)))


def cmd_webhooks(args: argparse.Namespace) -> int:
    from speechai.api.webhooks_command import run_webhooks

    config = _config(args)
    return anyio.run(lambda: run_webhooks(config, args.webhooks_action, account=getattr(args, "account", None),
                                          url=getattr(args, "url", None), events=getattr(args, "events", None),
                                          sub_id=getattr(args, "sub_id", None), state=getattr(args, "state", None)))


def _admin(args: argparse.Namespace, runner) -> int:
    """Run an admin command on the configured database (the demo's with ``--demo``)."""
    config = _config(args)
    if getattr(args, "demo", False):
        config.data_dir = config.data_dir / "demo"
    _log_setup(config, to_file=True)
    try:
        return anyio.run(lambda: runner(config))
    except ValueError as exc:
        print(f"speechai {args.command}: {exc}", file=sys.stderr)
        return 2


def cmd_jobs_reset(args: argparse.Namespace) -> int:
    from speechai.admin.command import run_reset

    return _admin(args, lambda c: run_reset(c, state=args.state, batch=args.batch, older_than=args.older_than,
                                            apply=args.apply, clear_bad_phones=args.clear_bad_phones,
                                            progress=args.progress or sys.stderr.isatty()))


def cmd_jobs_clean(args: argparse.Namespace) -> int:
    from speechai.admin.command import run_clean

    return _admin(args, lambda c: run_clean(c, older_than_days=args.older_than_days, archive=args.archive,
                                            apply=args.apply, progress=args.progress or sys.stderr.isatty()))


def cmd_db_indexes(args: argparse.Namespace) -> int:
    from speechai.admin.command import run_indexes

    return _admin(args, run_indexes)


def cmd_paid(args: argparse.Namespace) -> int:
    """The people of FILE (CSV, first column, or a JSON list of RUTs and/or phones) paid: their waiting
    jobs stop at once, jobs in flight finish their call and are never dialed again."""
    from actors.clock import RealClock
    from speechai.admin.db import admin_database
    from speechai.api.schemas import do_not_call_key
    from speechai.dialing import paid
    from speechai.store.models import Account

    try:
        entries = paid.entries_of_file(args.file.name, args.file.read_text(encoding="utf-8-sig"))
        paid.check_size(entries)
    except ValueError as exc:  # not JSON, not a list
        print(f"speechai paid: {args.file}: {exc}", file=sys.stderr)
        return 2
    keys, bad = paid.read_keys(entries, do_not_call_key)
    if bad or not keys:
        print(f"speechai paid: {args.file}: {len(bad)} entries are neither a RUT nor a phone: "
              f"{', '.join(map(repr, bad[:20]))}; nothing was changed" if bad else
              f"speechai paid: {args.file}: no RUTs or phones in it", file=sys.stderr)
        return 2

    async def run(config: Config) -> int:
        async with admin_database(config):
            if await Account.get(args.account) is None:
                raise ValueError(f"--account: no account {args.account!r}")
            result = await paid.mark_paid(args.account, keys, RealClock().now())
        print(f"{len(keys)} keys: {result.stopped} waiting jobs stopped (excluded: paid), {result.live} in "
              f"flight (call goes on, never dialed again), {result.already_final} already finished; "
              f"{result.do_not_call_added} do-not-call entries added")
        if result.unmatched:
            print(f"{len(result.unmatched)} keys matched no job: {', '.join(result.unmatched)}")
        return 0

    return _admin(args, run)


def cmd_status(args: argparse.Namespace) -> int:
    from speechai.admin.command import run_status

    return _admin(args, lambda c: run_status(c, as_json=args.json))


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number greater than 0, got {text!r}")
    return value


def _operator_error(exc: BaseException) -> BaseException | None:
    """The error to show the operator in one message, also when a task group wrapped it."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _operator_error(inner)) is not None:
                return found
        return None
    return exc if isinstance(exc, (EmbeddedServerError, OSError, PyMongoError)) else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PyMongoError):
        # The driver appends its topology description: noise for the operator.
        return f"cannot use the database: {str(exc).split(', Timeout:')[0]}"
    return str(exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechai", description="Outbound AI-voice call campaigns via Retell AI.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=None,
                       help="path to config.toml (default: ./config.toml if present, else built-in defaults)")
        return p

    p = with_config(sub.add_parser("run", help="run the campaign service (scheduler, call actors, control API)"))
    p.add_argument("--until-done", action="store_true", help="exit when no active batch has work left")
    p.set_defaults(func=cmd_run)

    p = with_config(sub.add_parser(
        "demo", help="load the configured example batch and run it on the embedded database and the simulator"))
    p.add_argument("--speed", type=_positive, default=120.0, help="simulated seconds per real second (default 120)")
    p.set_defaults(func=cmd_demo)

    p = with_config(sub.add_parser("load", help="load the batches declared in config.toml"))
    p.add_argument("--batch", default=None, help="load only this batch_id")
    p.set_defaults(func=cmd_load)

    from speechai.retell.simulator import add_arguments

    p = sub.add_parser("simulator", help="serve the Retell-compatible simulator")
    add_arguments(p)
    p.set_defaults(func=cmd_simulator)

    p = with_config(sub.add_parser(
        "report", help="campaign report: job states, outcomes, rates per day/hour/phone, cost, promises",
        description="The campaign report from the database: jobs per state and why they wait, calls by outcome, "
                    "contact and success rates per batch, local day, local hour and phone position, calls per "
                    "job, talk time, cost (cents), promises to pay and collected variables, stopped jobs, "
                    "do-not-call additions. With the embedded database and no data of its own under data_dir, "
                    "the demo's database (<data_dir>/demo) is read."))
    p.add_argument("--format", choices=("terminal", "markdown", "json", "xlsx"), default="terminal",
                   help="output format (default terminal; xlsx writes a workbook, see --out)")
    p.add_argument("--batch", default=None, help="only this batch id")
    p.add_argument("--account", default=None, help="only the batches of this account")
    p.add_argument("--from", dest="date_from", default=None, metavar="YYYY-MM-DD",
                   help="first business date (in each batch's timezone) of the calls counted")
    p.add_argument("--to", dest="date_to", default=None, metavar="YYYY-MM-DD", help="last business date, inclusive")
    p.add_argument("--out", type=Path, default=None,
                   help="write to this file (default: standard output; xlsx: speechai-report-<scope>.xlsx)")
    p.add_argument("--demo", action="store_true", help="read the demo's database (<data_dir>/demo)")
    p.set_defaults(func=cmd_report)

    keys = sub.add_parser("keys", help="create, list or revoke control API keys (docs/api.md)")
    keys_sub = keys.add_subparsers(dest="keys_action", required=True)
    p = with_config(keys_sub.add_parser("create", help="create a key and print its token (shown once)"))
    p.add_argument("--role", required=True, choices=["admin", "operator", "viewer", "billing"])
    p.add_argument("--account", default=None, help="the key's account (every role but admin)")
    p.add_argument("--name", default="", help="a label, e.g. who holds the key")
    p.set_defaults(func=cmd_keys)
    p = with_config(keys_sub.add_parser("list", help="list keys (never their secrets)"))
    p.add_argument("--account", default=None, help="only this account's keys")
    p.set_defaults(func=cmd_keys)
    p = with_config(keys_sub.add_parser("revoke", help="revoke a key at once"))
    p.add_argument("key_id", help="the key's id (key_…)")
    p.set_defaults(func=cmd_keys)

    hooks = sub.add_parser("webhooks", help="outbound webhook subscriptions and deliveries (docs/integrations.md)")
    hooks_sub = hooks.add_subparsers(dest="webhooks_action", required=True)
    p = with_config(hooks_sub.add_parser("create", help="subscribe a URL; prints its signing secret (shown once)"))
    p.add_argument("--account", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--events", nargs="+", required=True, help="event types, or '*' for all")
    p.set_defaults(func=cmd_webhooks)
    p = with_config(hooks_sub.add_parser("list", help="list subscriptions (never their secrets)"))
    p.add_argument("--account", default=None)
    p.set_defaults(func=cmd_webhooks)
    for name, what in (("enable", "enable a subscription (clears its failure run)"),
                       ("disable", "disable a subscription"),
                       ("deliveries", "list a subscription's deliveries"),
                       ("replay", "send again a subscription's deliveries in a state (default failed)")):
        p = with_config(hooks_sub.add_parser(name, help=what))
        p.add_argument("sub_id")
        if name in ("deliveries", "replay"):
            p.add_argument("--state", default=None, choices=["pending", "delivered", "failed", "disabled"])
        p.set_defaults(func=cmd_webhooks)

    def admin(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_config(p)
        p.add_argument("--demo", action="store_true", help="use the demo's database (<data_dir>/demo)")
        return p

    def writer(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--apply", action="store_true", help="make the change (default: a dry run that prints it)")
        p.add_argument("--progress", action="store_true", help="show the progress bar also when stderr is no terminal")
        return p

    jobs = sub.add_parser("jobs", help="job maintenance: reset failed/excluded jobs, clean old finished ones")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    p = writer(admin(jobs_sub.add_parser(
        "reset", help="put failed or excluded jobs back to pending (dry run unless --apply)",
        description="Put failed or excluded jobs back to pending, due now, with their attempt count restarted and "
                    "the transition recorded. Each job is replaced whole only if it did not change meanwhile. "
                    "A dry run (the default) prints what would change.")))
    p.add_argument("--state", required=True, choices=("failed", "excluded"), help="the jobs to reset")
    p.add_argument("--batch", default=None, help="only this batch (default: every batch)")
    p.add_argument("--older-than", default=None, metavar="AGE",
                   help="only jobs last changed longer ago than this (90s, 30m, 12h, 7d, 2w)")
    p.add_argument("--clear-bad-phones", action="store_true",
                   help="also forget which phones were marked bad (after the numbers were corrected)")
    p.set_defaults(func=cmd_jobs_reset)
    p = writer(admin(jobs_sub.add_parser(
        "clean", help="delete (or archive and delete) old finished jobs and their call payloads",
        description="Delete finished jobs (done, failed, excluded, cancelled) last changed more than N days ago, "
                    "with their call payloads and webhook records; live jobs are never touched. --archive "
                    "writes them first as gzipped JSON lines. A dry run (the default) prints what would go.")))
    p.add_argument("--older-than-days", type=int, required=True, metavar="N", help="age in days (at least 1)")
    p.add_argument("--archive", type=Path, default=None, metavar="FILE.jsonl.gz",
                   help="append each job and its call payloads to this file before deleting")
    p.set_defaults(func=cmd_jobs_clean)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    p = admin(db_sub.add_parser("indexes", help="create the declared indexes if missing and list every index",
                                description="Create every index the documents declare (a no-op for those that "
                                            "exist) and list each collection's indexes; exit 1 if one is missing."))
    p.set_defaults(func=cmd_db_indexes)

    p = admin(sub.add_parser("paid", help="these people paid: stop their jobs (a CSV or JSON list of RUTs/phones)",
                             description="Stop the waiting jobs of the people in FILE (excluded, reason paid) and "
                                         "put them on the do-not-call list; jobs in flight finish their call and "
                                         "are never dialed again. FILE: a CSV (first column; a header row is "
                                         "skipped) or a .json list of RUTs and/or phones."))
    p.add_argument("--account", required=True, help="the account whose jobs stop")
    p.add_argument("file", type=Path, metavar="FILE", help="the list (.csv or .json)")
    p.set_defaults(func=cmd_paid)

    p = admin(sub.add_parser("status", help="instances, generations, leases, calls in flight, grants, batches",
                             description="What the database says about the running instances: ids and "
                                         "generations, leases held and expired, calls in flight, concurrency "
                                         "grants, batch states and the time of the last job change."))
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_status)

    p = with_config(sub.add_parser("check-config", help="validate the configuration and print it resolved"))
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"speechai: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        found = _operator_error(exc)
        if found is None:
            raise  # a defect, not an operator mistake: the traceback is what fixes it
        print(f"speechai: {_describe(found)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
