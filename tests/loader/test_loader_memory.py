"""``speechai load`` as a real process on hostile workbooks: a clean one-line refusal in bounded memory.

Peak memory is the child's own high-water mark (``ru_maxrss``). A small launcher process starts the
command and reports it: Linux carries the parent's mark into a child started from it, so measured
straight from the test process it would include this test process's own memory.
"""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hostile_files import SHEET, bomb, lie_about_size, truncated
from loader_data import COLLECTION, RUT_A

from speechai.loader.synthetic import write_xlsx

ROOT = Path(__file__).resolve().parents[2]
INFLATED = 300 * 2**20
PEAK_BOUND_MIB = 250  # the command itself is about 75 MiB; the old reader peaked at 930 MB on this file
_LAUNCHER = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[2:], timeout=120, check=False)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
with open(sys.argv[1], "w") as f:
    json.dump({"returncode": proc.returncode, "peak_mib": peak}, f)
"""


def _load(tmp_path: Path, mongo_uri: str, file: Path) -> tuple[dict[str, float], str, str]:
    (tmp_path / "config.toml").write_text(
        f'[[batches]]\nfile = "{file.name}"\naccount = "acme"\nbatch_id = "b1"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHAI_", "RETELL_"))}
    env.update(PYTHONPATH=str(ROOT), SPEECHAI_MONGO_URI=mongo_uri,
               SPEECHAI_MONGO_DATABASE=f"mem_{uuid.uuid4().hex[:8]}")
    result = tmp_path / "result.json"
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, str(result), sys.executable, "-m", "speechai.cli", "load"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150, check=False)
    assert out.returncode == 0, out.stderr  # the launcher itself
    return json.loads(result.read_text()), out.stdout, out.stderr


def _assert_refused(measured: dict[str, float], stdout: str, stderr: str, *needles: str) -> None:
    assert measured["returncode"] == 1, (stdout, stderr)
    assert "Traceback" not in stdout + stderr, stderr
    lines = [line for line in stderr.splitlines() if "NOT loaded" in line]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], stderr


@pytest.mark.parametrize("lie", [False, True], ids=["declared", "lying-sizes"])
def test_inflating_workbook_is_refused_in_bounded_memory(tmp_path: Path, mongo_uri: str, lie: bool) -> None:
    path = bomb(tmp_path / "bomb.xlsx", INFLATED)
    assert path.stat().st_size < 1_000_000
    if lie:  # declared small: only the checks made while reading can stop it
        lie_about_size(path, SHEET, 2**19)
    measured, stdout, stderr = _load(tmp_path, mongo_uri, path)
    if lie:
        _assert_refused(measured, stdout, stderr, "bomb.xlsx", "damaged workbook")
    else:
        _assert_refused(measured, stdout, stderr, "bomb.xlsx", "the limit is 100:1")
    assert measured["peak_mib"] < PEAK_BOUND_MIB, measured


def test_one_huge_cell_under_the_ratio_limit_is_refused_in_bounded_memory(tmp_path: Path, mongo_uri: str) -> None:
    # 200 MiB of 'A' followed by enough random text to keep the part under 100:1: only the text-run
    # check made while reading stops it.
    rng = random.Random(3)
    tail = "".join(f'<c r="E{i}" t="inlineStr"><is><t>{"".join(rng.choices(string.ascii_letters, k=60))}'
                   "</t></is></c>" for i in range(60_000))
    path = bomb(tmp_path / "cell.xlsx", 200 * 2**20, tail=tail)
    measured, stdout, stderr = _load(tmp_path, mongo_uri, path)
    _assert_refused(measured, stdout, stderr, "cell.xlsx", "more than 1.0 MiB of text")
    assert measured["peak_mib"] < PEAK_BOUND_MIB, measured


def test_damaged_workbook_is_one_line_and_a_non_zero_exit(tmp_path: Path, mongo_uri: str) -> None:
    valid = write_xlsx(tmp_path / "valid.xlsx", COLLECTION, [[RUT_A, "Ana", 991975219, 100, None]] * 200)
    path = truncated(tmp_path / "cut.xlsx", valid)
    measured, stdout, stderr = _load(tmp_path, mongo_uri, path)
    _assert_refused(measured, stdout, stderr, "batch b1: NOT loaded: cut.xlsx is a damaged workbook")
