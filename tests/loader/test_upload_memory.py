"""``POST /batches/upload`` on a running ``speechai run`` with hostile workbooks: a clean 413/400, an answer in
seconds, and the service's peak memory barely moves (it reached 4 GB on the 0.3 MB workbook below).

The service is a real process with its embedded database. Its peak resident memory is ``VmHWM`` from
``/proc/<pid>/status``; writing ``5`` to ``/proc/<pid>/clear_refs`` resets that mark to the current
resident size, so each upload is measured from its own baseline in the one process.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
import pytest
from hostile_files import SHEET, bomb, lie_about_size
from loader_data import COLLECTION, RUT_A

from speechai.loader.synthetic import write_xlsx

TOKEN = "upload-memory-token-0123456789abcdef"
API_KEY = "key_upload_memory"
INFLATED = 300 * 2**20
GROWTH_BOUND_MIB = 100
ANSWER_WITHIN_S = 60  # the old service gave no answer in 60 s


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _status_kib(self, field: str) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(rf"{field}:\s+(\d+) kB", status)
        assert found, status
        return int(found.group(1))

    def peak_kib(self) -> int:
        return self._status_kib("VmHWM")

    def resident_kib(self) -> int:
        return self._status_kib("VmRSS")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("upload-memory")
    config = data / "config.toml"
    config.write_text(f'data_dir = "{data}"\n[control]\nport = 0\n[runtime]\nclock = "simulated"\n'
                      '[logging]\nformat = "json"\n', encoding="utf-8")
    log = data / "service.log"
    # the test run's own settings (database, keys) stay out: the service uses its embedded server
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHAI_", "RETELL_"))}
    env.update(RETELL_API_KEY=API_KEY, SPEECHAI_CONTROL_TOKEN=TOKEN)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "speechai.cli", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r'"control_port": (\d+)', log.read_text())):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"service did not start: {log.read_text()[-3000:]}"
            time.sleep(0.1)
        yield Service(proc, int(found.group(1)), log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _upload(service: Service, path: Path, batch_id: str) -> tuple[int, dict[str, object]]:
    form = aiohttp.FormData()
    form.add_field("account", "acme")
    form.add_field("batch_id", batch_id)
    form.add_field("file", await anyio.Path(path).read_bytes(), filename=path.name,
                   content_type="application/octet-stream")
    timeout = aiohttp.ClientTimeout(total=ANSWER_WITHIN_S)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout) as http, \
            http.post(f"{service.url}/batches/upload", data=form) as resp:
        return resp.status, json.loads(await resp.text())


async def _batch_status(service: Service, batch_id: str) -> int:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http, \
            http.get(f"{service.url}/batches/{batch_id}") as resp:
        return resp.status


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("hostile")
    declared = bomb(tmp / "bomb.xlsx", INFLATED)
    lying = lie_about_size(bomb(tmp / "liar.xlsx", INFLATED), SHEET, 2**19)
    # 200 MiB of 'A' and enough random text to keep the part under 100:1: only the text-run check stops it
    rng = random.Random(3)
    tail = "".join(f'<c r="E{i}" t="inlineStr"><is><t>{"".join(rng.choices(string.ascii_letters, k=60))}'
                   "</t></is></c>" for i in range(60_000))
    cell = bomb(tmp / "cell.xlsx", 200 * 2**20, tail=tail)
    valid = write_xlsx(tmp / "valid.xlsx", COLLECTION, [[RUT_A, "Ana", 991975219, 100, None]])
    return {"declared": declared, "lying": lying, "cell": cell, "valid": valid}


@pytest.mark.parametrize(("case", "on_disk", "status", "needle"), [
    ("declared", 1_000_000, 413, "the limit is 100:1"),
    ("lying", 1_000_000, 400, "damaged workbook"),  # declared small: only the checks while reading stop it
    ("cell", 4_000_000, 413, "more than 1.0 MiB of text"),
], ids=["declared-sizes", "lying-sizes", "one-huge-cell"])
async def test_hostile_workbook_upload_is_refused_in_bounded_memory(service: Service, files: dict[str, Path],
                                                                   case: str, on_disk: int, status: int,
                                                                   needle: str) -> None:
    path = files[case]
    assert path.stat().st_size < on_disk  # small on the wire: the danger is what it inflates to
    # a valid upload first, so the baseline includes the reader's code and buffers
    got, body = await _upload(service, files["valid"], f"warm-{case}")
    assert got == 200, body
    service.reset_peak()
    before = service.peak_kib()
    assert before <= service.resident_kib() + 2048, "the peak was not reset: growth would be under-measured"
    started = time.monotonic()
    got, body = await _upload(service, path, f"hostile-{case}")
    took = time.monotonic() - started
    growth_mib = (service.peak_kib() - before) / 1024
    print(f"{case}: {got} in {took:.1f} s, peak RSS {before / 1024:.0f} MiB before, grew by {growth_mib:.1f} MiB")
    assert got == status, body
    error = str(body["error"])
    assert needle in error and path.name in error, body
    assert "Traceback" not in error
    assert growth_mib < GROWTH_BOUND_MIB, f"peak RSS grew by {growth_mib:.0f} MiB: {service.log.read_text()[-2000:]}"
    assert await _batch_status(service, f"hostile-{case}") == 404  # nothing loaded
    assert service.proc.poll() is None
