"""The report over the control endpoint (JSON and .xlsx download) and `speechai report` as a real
subprocess on a demo-like data directory."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
from openpyxl import load_workbook

from actors.clock import SimClock
from speechai.reports.data import ReportFilter, build_report, to_json
from speechai.retell.simulator import RetellSimulator
from speechai.store.embedded import EmbeddedMongo
from speechai.store.models import DoNotCall
from tests.reports.campaign import SCL, campaign_data_dir
from tests.reports.test_report import NOW
from tests.runtime.harness import API_KEY, make_config
from tests.runtime.test_policy_e2e import TOKEN, drive

ROOT = Path(__file__).resolve().parents[2]


async def test_report_routes(report_db, mongo_uri, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPEECHAI_CONTROL_TOKEN", TOKEN)
    clock = SimClock(NOW, speed=1)
    # stored text with a control character (openpyxl refuses one in a cell): the workbook still builds
    await DoNotCall(account_id="acme", key="+56999999999", reason="a\x01b", added_at=NOW).insert()
    expected = to_json(await build_report(ReportFilter(), NOW))

    async def body(instance, http: aiohttp.ClientSession, base: str) -> None:
        async with http.get(f"{base}/reports/summary") as resp:
            assert resp.status == 200
            data = await resp.json()
        assert data["sections"] == expected["sections"]
        async with http.get(f"{base}/reports/summary", params={"batch": "b1", "from": "2026-03-03",
                                                               "to": "2026-03-03"}) as resp:
            one_day = await resp.json()
        assert one_day["filter"] == {"batch": "b1", "account": None, "from": "2026-03-03", "to": "2026-03-03"}
        assert one_day["sections"]["totals"]["rows"][0]["calls"] == expected["sections"]["days"]["rows"][-1]["calls"]
        async with http.get(f"{base}/reports/summary.xlsx", params={"account": "acme"}) as resp:
            assert resp.status == 200 and resp.content_type.endswith("spreadsheetml.sheet")
            assert "attachment" in resp.headers["Content-Disposition"]
            wb = load_workbook(io.BytesIO(await resp.read()))
        assert wb["Totals"]["C2"].value == 12 and "Days" in wb.sheetnames
        reasons = [row[2].value for row in wb["Do not call"].iter_rows(min_row=2)]
        assert "a\ufffdb" in reasons
        async with http.get(f"{base}/reports/summary.xlsx") as resp:
            assert resp.status == 200
        for params, needle in (({"from": "03/02/2026"}, "from must be a date"), ({"day": "x"}, "unknown query"),
                               ({"from": "2026-03-05", "to": "2026-03-01"}, "is after to"),
                               ({"batch": "\x01"}, "batch must not contain control characters"),
                               ({"account": "ac\x1bme"}, "account must not contain control characters")):
            async with http.get(f"{base}/reports/summary", params=params) as resp:
                assert resp.status == 422 and needle in (await resp.json())["error"]
        async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{base}/reports/summary") as resp:
            assert resp.status == 401

    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=1) as sim:
        await drive(report_db, make_config(report_db, mongo_uri, tmp_path), clock, sim, body, within=30)


def speechai(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHAI_", "RETELL_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "speechai.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


async def test_report_command_on_a_demo_data_dir(tmp_path) -> None:
    # A data directory as `speechai demo` leaves it: the campaign's embedded database under var/demo.
    await campaign_data_dir(tmp_path / "var" / "demo")
    (tmp_path / "config.toml").write_text('data_dir = "var"\n')

    out = speechai("report", "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "reading the demo's database" in out.stderr
    data = json.loads(out.stdout)
    [t] = data["sections"]["totals"]["rows"]
    assert (t["jobs"], t["calls"], t["successes"], t["cost_cents"]) == (6, 12, 3, 81.918)

    out = speechai("report", "--format", "xlsx", "--batch", "b1", "--out", "r.xlsx", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    wb = load_workbook(tmp_path / "r.xlsx")
    header = [c.value for c in wb["Totals"][1]]
    assert wb["Totals"].cell(row=2, column=header.index("cost_cents") + 1).value == 81.918

    out = speechai("report", "--from", "2 March", cwd=tmp_path)
    assert out.returncode == 2 and "from must be a date as YYYY-MM-DD, got '2 March'" in out.stderr
    assert "Traceback" not in out.stderr
    assert SCL.key == "America/Santiago"
    for args, needle in ((("--batch", "nope"), "speechai report: no batch 'nope'"),
                         (("--account", "nobody"), "speechai report: no account 'nobody'"),
                         (("--batch", "b\x011", "--format", "xlsx"), "batch must not contain control characters")):
        out = speechai("report", *args, cwd=tmp_path)
        assert out.returncode == 2 and needle in out.stderr, out.stderr
        assert "Traceback" not in out.stderr

    # admin commands choose the same database, and never create an empty one of their own to read
    out = speechai("status", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "reading the demo's database under var/demo" in out.stderr
    assert {b["id"] for b in json.loads(out.stdout)["batches"]} == {"b1"}
    assert not (tmp_path / "var" / "mongo").exists()

    # an empty database of its own (a command run once before the demo's fallback existed): still the demo's
    server = EmbeddedMongo(tmp_path / "var")
    server.start()
    server.stop()
    assert (tmp_path / "var" / "mongo").exists()
    for args in (("report", "--format", "json"), ("status", "--json"), ("db", "indexes")):
        out = speechai(*args, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "reading the demo's database under var/demo (the one under var has no batches)" in out.stderr, args
    out = speechai("report", "--format", "json", cwd=tmp_path)
    assert json.loads(out.stdout)["sections"]["totals"]["rows"][0]["calls"] == 12
