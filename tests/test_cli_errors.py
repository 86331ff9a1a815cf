"""Operator mistakes at the command line end in one clear message and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from speechai.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
HEADERS = "RUT,Nombre,Monto,Telefono\n"


def speechai(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 90) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHAI_", "RETELL_"))}
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "speechai.cli", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_clean_failure(out: subprocess.CompletedProcess[str], *needles: str, code: int | None = None) -> None:
    assert out.returncode != 0, out.stdout
    if code is not None:
        assert out.returncode == code, out.stderr
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    out = speechai("check-config", "--config", str(tmp_path), cwd=tmp_path)
    assert_clean_failure(out, str(tmp_path), "cannot read", code=2)


def test_config_file_that_is_not_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'\xff\xfe[runtime]\nconcurrency = 5\n')
    out = speechai("check-config", "--config", str(path), cwd=tmp_path)
    assert_clean_failure(out, str(path), "UTF-8", code=2)


def test_demo_speed_must_be_positive(tmp_path: Path) -> None:
    for speed in ("-1", "0", "nan"):
        out = speechai("demo", "--speed", speed, cwd=tmp_path)
        assert_clean_failure(out, "--speed", code=2)
    assert not (tmp_path / "var").exists()  # refused before anything was created


def test_unreachable_database(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(HEADERS + "11.111.111-1,Ana,1000,+56987654321\n", encoding="utf-8")
    write_config(tmp_path, '[[batches]]\nfile = "people.csv"\naccount = "acme"\nbatch_id = "b1"\n')
    out = speechai("load", cwd=tmp_path,
                   env={"SPEECHAI_MONGO_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"})
    assert_clean_failure(out, "database", "127.0.0.1:1", code=1)
    assert "Topology Description" not in out.stderr  # the driver's internals are not the operator's problem


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = speechai("load", cwd=tmp_path, env={"SPEECHAI_DATA_DIR": str(tmp_path / "afile" / "var")})
    assert_clean_failure(out, "afile", code=1)


def test_data_dir_in_use_by_another_instance(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    # A live process whose command line names speechai owns the directory.
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "speechai"])
    try:
        (data / "nx-27017.json").write_text(json.dumps({"server_pid": owner.pid, "owner_pid": owner.pid}))
        write_config(tmp_path, '[[batches]]\nfile = "x.csv"\naccount = "acme"\nbatch_id = "b1"\n')
        out = speechai("load", cwd=tmp_path)
        assert_clean_failure(out, "in use", str(owner.pid), code=1)
        assert owner.poll() is None  # the other instance is left alone
    finally:
        owner.kill()
        owner.wait()


def test_run_against_retell_without_an_api_key(tmp_path: Path) -> None:
    write_config(tmp_path, '[retell]\nbase_url = "https://api.retellai.com"\n')
    out = speechai("run", cwd=tmp_path)
    assert_clean_failure(out, "RETELL_API_KEY", code=2)
    assert not (tmp_path / "var" / "mongo").exists()  # refused before starting the database


def test_simulator_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = speechai("simulator", "--port", str(port), cwd=tmp_path)
    assert_clean_failure(out, str(port), code=1)


def test_header_only_spreadsheet_is_not_loaded(tmp_path: Path, mongo_uri: str) -> None:
    (tmp_path / "people.csv").write_text(HEADERS, encoding="utf-8")
    write_config(tmp_path, '[[batches]]\nfile = "people.csv"\naccount = "acme"\nbatch_id = "b1"\n')
    db = f"cli_{uuid.uuid4().hex[:8]}"
    out = speechai("load", cwd=tmp_path, env={"SPEECHAI_MONGO_URI": mongo_uri, "SPEECHAI_MONGO_DATABASE": db})
    assert_clean_failure(out, "people.csv", "no data rows", code=1)
    from pymongo import MongoClient

    with MongoClient(mongo_uri) as client:
        assert client[db]["batches"].count_documents({}) == 0  # no empty batch left behind


# Environment overrides -------------------------------------------------------------------------------


def test_call_settings_can_be_overridden_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text(HEADERS)
    path = write_config(tmp_path, '[call_settings]\nmax_attempts = 5\n'
                                  '[[batches]]\nfile = "b.csv"\naccount = "acme"\nbatch_id = "b1"\n')
    config = load_config(path, environ={"SPEECHAI_CALL_SETTINGS_MAX_ATTEMPTS": "2"})
    assert config.call_settings.max_attempts == 2
    assert config.batches[0].call_settings.max_attempts == 2  # batches inherit the overridden default


def test_misspelt_environment_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, ""), environ={"SPEECHAI_RUNTIME_CONCURENCY": "5"})
    assert "SPEECHAI_RUNTIME_CONCURENCY" in str(err.value)
    # the secrets and unrelated variables are not configuration keys
    load_config(write_config(tmp_path, ""), environ={"SPEECHAI_CONTROL_TOKEN": "t", "SPEECHAI_CRASH_POINTS": ""})


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, ""), environ={"SPEECHAI_CONTROL_PORT": "abc"})
    assert "control.port = 'abc'" in str(err.value) and "SPEECHAI_CONTROL_PORT" in str(err.value)


def test_run_with_the_control_port_in_use_fails_at_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, f'data_dir = "var"\n[control]\nport = {port}\n')
        out = speechai("run", "--config", str(config), cwd=tmp_path, timeout=60)
    assert_clean_failure(out, str(port), code=1)
    assert not (tmp_path / "var" / "nx-27017.json").exists()  # the embedded server was stopped too
