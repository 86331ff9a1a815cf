"""Configuration: validated, with errors naming the key, the value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from speechai.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_is_valid_and_resolves_paths_relative_to_the_file() -> None:
    config = load_config(ROOT / "config.toml", environ={})
    assert config.data_dir == ROOT / "var"
    assert config.batches and config.batches[0].file == ROOT / "examples" / "debtors.xlsx"
    assert config.batches[0].file.exists()
    assert config.mongo.uri == "" and config.retell.base_url == ""


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[runtime]\nconcurency = 5\n"), environ={})
    assert "runtime.concurency: unknown key" in str(err.value)


def test_bad_value_names_key_value_and_rule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[runtime]\nconcurrency = 0\n"), environ={})
    text = str(err.value)
    assert "runtime.concurrency = 0" in text and "greater than or equal to 1" in text


def test_bad_call_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[call_settings]\ntimezone = "Mars/Olympus"\ndays_of_week = [0]\n'), environ={})
    text = str(err.value)
    assert "call_settings.timezone" in text and "Mars/Olympus" in text
    assert "call_settings.days_of_week" in text


def test_literal_choices_are_listed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[runtime]\nclock = "fast"\n'), environ={})
    assert "runtime.clock = 'fast'" in str(err.value) and "'real'" in str(err.value)


def test_invalid_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[runtime\n"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[mongo]\nuri = "mongodb://file:27017"\n[runtime]\nconcurrency = 5\n')
    config = load_config(path, environ={"SPEECHAI_MONGO_URI": "mongodb://env:27017",
                                        "SPEECHAI_RUNTIME_CONCURRENCY": "7", "SPEECHAI_DATA_DIR": "/srv/speechai"})
    assert config.mongo.uri == "mongodb://env:27017"
    assert config.runtime.concurrency == 7
    assert config.data_dir == Path("/srv/speechai")


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, ""), environ={"SPEECHAI_RUNTIME_CONCURRENCY": "many"})
    assert "runtime.concurrency = 'many'" in str(err.value)


def test_api_key_only_from_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"retell\.api_key: unknown key"):
        load_config(write(tmp_path, '[retell]\napi_key = "secret"\n'), environ={})


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["load"], ["simulator"], ["check-config"]])
def test_every_command_has_help(command: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "speechai.cli", *command, "--help"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "usage: speechai" in out.stdout


def test_cli_reports_config_errors_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[runtime]\nconcurrency = -3\n")
    out = subprocess.run([sys.executable, "-m", "speechai.cli", "check-config", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "runtime.concurrency = -3" in out.stderr


def test_batch_call_settings_override_the_defaults_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "b.xlsx").write_bytes(b"")
    path = write(tmp_path, """
[call_settings]
max_attempts = 9
timezone = "America/New_York"
[call_settings.retry_delay_min]
no_answer = 15
voicemail = 45

[[batches]]
file = "b.xlsx"
account = "acme"
batch_id = "b1"
[batches.call_settings]
max_attempts = 2
[batches.call_settings.retry_delay_min]
voicemail = 90

[[batches]]
file = "b.xlsx"
account = "acme"
batch_id = "b2"
""")
    b1, b2 = load_config(path, environ={}).batches
    assert b1.call_settings.max_attempts == 2 and b1.call_settings.timezone == "America/New_York"
    assert (b1.call_settings.retry_delay_min.no_answer, b1.call_settings.retry_delay_min.voicemail) == (15, 90)
    assert b2.call_settings.max_attempts == 9 and b2.call_settings.retry_delay_min.no_answer == 15


@pytest.mark.parametrize("zone", ["America", "Etc", "x" * 300])
def test_check_config_names_a_bad_timezone_instead_of_an_os_error(tmp_path: Path, zone: str) -> None:
    # ZoneInfo("America") raised IsADirectoryError, which check-config printed as "[Errno 21] Is a directory"
    path = write(tmp_path, f'[call_settings]\ntimezone = "{zone}"\n')
    out = subprocess.run([sys.executable, "-m", "speechai.cli", "check-config", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert out.returncode == 2, out.stdout
    assert "Traceback" not in out.stderr and "Errno" not in out.stderr
    assert "call_settings.timezone" in out.stderr and "America/Santiago" in out.stderr
    assert "x" * 100 not in out.stderr  # a long value is shortened


def test_batch_settings_beyond_their_limits_are_named(tmp_path: Path) -> None:
    (tmp_path / "b.xlsx").write_bytes(b"")
    path = write(tmp_path, """
[call_settings]
daily_quota = 9223372036854775808

[[batches]]
file = "b.xlsx"
account = "acme"
batch_id = "b1"
[batches.call_settings]
allowed_hours = [{ start = 0, end = "13:00" }]
[batches.call_settings.retry_delay_min]
no_answer = 1000000000000
""")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    text = str(err.value)
    assert "call_settings.daily_quota = 9223372036854775808" in text and "1000000" in text
    assert "batches.0.call_settings.allowed_hours.0.start = 0" in text and "HH:MM" in text
    assert "batches.0.call_settings.retry_delay_min.no_answer = 1000000000000" in text and "43200" in text
