"""``speechai`` command: run, demo, load, simulator, check-config."""

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
    from speechai.runtime.service import run_instance

    config = _config(args)
    if config.retell.base_url and not config.retell_api_key:
        raise ConfigError(f"retell.base_url is {config.retell.base_url!r} but RETELL_API_KEY is not in the "
                          "environment (leave base_url empty to run against the simulator)")
    _log_setup(config)
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
