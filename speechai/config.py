"""Runtime configuration: ``config.toml`` validated with pydantic, overridden by environment variables.

Every key ``[section] key`` can be overridden by ``SPEECHAI_<SECTION>_<KEY>`` (top-level keys by
``SPEECHAI_<KEY>``). Secrets come only from the environment: ``RETELL_API_KEY`` and
``SPEECHAI_CONTROL_TOKEN``.
"""

from __future__ import annotations

import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechai.domain.settings import CallSettings, merge_settings, short
from speechai.loader.spec import BatchSource

ENV_PREFIX = "SPEECHAI_"


class ConfigError(Exception):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MongoConfig(_Section):
    uri: str = ""  # empty: start the embedded nx-27017 server under data_dir
    database: str = "speechai"


class RetellConfig(_Section):
    base_url: str = ""  # empty: start the local Retell-compatible simulator in-process
    agent_id: str = "agent_demo"
    from_number: str = "+566001234567"  # a 600 number: Subtel requires it for automated collection calls
    timeout_s: float = Field(15.0, gt=0)
    cents_per_minute: int = Field(12, ge=0)  # estimate used to reserve credit before a dial


class RuntimeConfig(_Section):
    instance_id: str = ""  # empty: <hostname>-<digest of data_dir>, stable across restarts
    # Calls in flight at once; a sanity bound only (each live call costs a few KB and one task).
    concurrency: int = Field(20, ge=1, le=100_000)
    poll_interval_s: float = Field(10.0, gt=0)  # business seconds between get-call polls
    scheduler_interval_s: float = Field(60.0, gt=0)  # longest the scheduler sleeps without looking
    lease_ttl_s: float = Field(30.0, ge=1)  # real seconds; heartbeat renews at a third of it
    clock: Literal["real", "simulated"] = "real"
    sim_start: datetime | None = None  # simulated clock start (default: now)
    sim_speed: float = Field(1.0, gt=0)  # business seconds per real second
    skip_idle: bool = True  # simulated clock jumps over stretches where nothing can happen
    # With every line busy, this many more jobs are claimed and checked ahead (person, caps,
    # do-not-call), so a line freed by a call that ends is dialed from at once; 0 turns it off.
    ready_ahead: int = Field(16, ge=0, le=1000)


class ControlConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    # each API key's token bucket: sustained requests per second and the burst after being idle
    rate_limit_per_s: float = Field(50.0, gt=0, le=100_000)
    rate_limit_burst: int = Field(200, ge=1, le=100_000)
    # failed authentications per client address (a bad-token flood is answered 429)
    auth_failures_per_s: float = Field(5.0, gt=0, le=10_000)
    auth_failure_burst: int = Field(20, ge=1, le=100_000)
    # open connections at once (each a file descriptor; keep well under the unit's LimitNOFILE)
    max_connections: int = Field(1024, ge=16, le=60_000)


class SimulatorConfig(_Section):
    concurrency: int = Field(20, ge=1)
    seed: int = 7
    rates: dict[str, float] = Field(default_factory=dict)


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    file: str = ""  # empty: stderr


class AccountConfig(_Section):
    """An account's limits, applied at every start (the control API can change them in between)."""

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    max_concurrent_calls: int = Field(20, ge=1, le=10_000)  # the account's share of provider concurrency
    daily_call_limit: int | None = Field(None, ge=1, le=10_000_000)


class IntegrationsConfig(_Section):
    """Outbound webhooks and the CRM subscriber (docs/integrations.md)."""

    allow_private_targets: bool = False  # true: webhook URLs may target loopback/private addresses
    delivery_timeout_s: float = Field(10.0, gt=0, le=120)
    delivery_concurrency: int = Field(16, ge=1, le=1000)
    retry_for_h: float = Field(26.0, ge=24, le=24 * 30)  # a delivery is given up after failing this long
    disable_after_failures: int = Field(20, ge=1, le=100_000)  # in a row, with ...
    disable_after_h: float = Field(24.0, gt=0, le=24 * 30)  # ... no success for this long


class Config(_Section):
    data_dir: Path = Path("var")
    mongo: MongoConfig = MongoConfig()
    retell: RetellConfig = RetellConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    control: ControlConfig = ControlConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    logging: LoggingConfig = LoggingConfig()
    integrations: IntegrationsConfig = IntegrationsConfig()
    call_settings: CallSettings = CallSettings()
    batches: list[BatchSource] = Field(default_factory=list)
    accounts: list[AccountConfig] = Field(default_factory=list)

    @property
    def retell_api_key(self) -> str:
        return os.environ.get("RETELL_API_KEY", "")


# Variables under a section's prefix that are not configuration keys.
NOT_KEYS = frozenset({"SPEECHAI_CONTROL_TOKEN"})


def _env_overrides(raw: dict[str, Any], environ: dict[str, str],
                   origins: dict[str, str] | None = None) -> dict[str, Any]:
    """``origins`` receives the variable behind each overridden key (``"runtime.concurrency"``)."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    origins = {} if origins is None else origins
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            prefix = f"{ENV_PREFIX}{name}_".upper()
            known = {f"{prefix}{key}".upper(): key for key in annotation.model_fields}
            for env in sorted(environ):
                if not env.startswith(prefix) or env in NOT_KEYS:
                    continue
                if env not in known:
                    # A misspelt override would otherwise be ignored without a word.
                    raise ConfigError(f"environment variable {env} is not a configuration key; "
                                      f"[{name}] has: {', '.join(annotation.model_fields)}")
                section = merged.setdefault(name, {})
                if isinstance(section, dict):  # else the file's own value fails validation, named
                    section[known[env]] = environ[env]
                origins[f"{name}.{known[env]}"] = env
        elif (env := f"{ENV_PREFIX}{name}".upper()) in environ:
            merged[name] = environ[env]
            origins[name] = env
    return merged


def _batch_settings_over_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A batch's ``call_settings`` override the top-level ``[call_settings]`` key by key."""
    defaults = raw.get("call_settings")
    batches = raw.get("batches")
    if not isinstance(defaults, dict) or not isinstance(batches, list):
        return raw
    merged = [merge_settings({"call_settings": defaults}, b) if isinstance(b, dict) else b for b in batches]
    return {**raw, "batches": merged}


def describe_errors(exc: ValidationError, source: str, origins: dict[str, str] | None = None) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            env = next((v for k, v in (origins or {}).items() if key == k or key.startswith(k + ".")), None)
            # a long value is cut (an error must not echo a whole file back); pydantic's prefix is noise
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {key} = {short(err.get('input'))}{f' (from {env})' if env else ''}: {msg}")
    return "\n".join(lines)


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> Config:
    """Read and validate the config; a missing ``path`` means all defaults."""
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    origins: dict[str, str] = {}
    try:
        # Environment first: an overridden [call_settings] default reaches the batches too.
        config = Config.model_validate(_batch_settings_over_defaults(_env_overrides(raw, environ, origins)))
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source, origins)) from None
    if path is not None:
        # Relative paths in the file are relative to the file, not to the working directory.
        base = path.parent
        if not config.data_dir.is_absolute():
            config.data_dir = base / config.data_dir
        for batch in config.batches:
            if not batch.file.is_absolute():
                batch.file = base / batch.file
    return config
