"""``speechai keys`` from a real subprocess, batches from JSON rows, top-up limits and batch cancel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from speechai.store.api_models import ApiKey, AuditEntry
from speechai.store.models import Account, Batch, BatchStatus, Job, JobState
from tests.api.conftest import Api


def _keys(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speechai.cli", "keys", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


async def test_keys_command_creates_lists_and_revokes(api: Api, db, mongo_uri: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[mongo]\nuri = "{mongo_uri}"\ndatabase = "{db.name}"\n')
    done = _keys(config, "create", "--role", "viewer", "--account", "acme", "--name", "wallboard")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["role"] == "viewer" and "shown only now" in done.stderr
    api.tokens["cli"] = created["token"]
    status, got = await api.call("cli", "GET", "/accounts/acme")
    assert status == 200 and got["id"] == "acme"
    assert (await api.call("cli", "GET", "/accounts/beta"))[0] == 404
    listed = [json.loads(line) for line in _keys(config, "list", "--account", "acme").stdout.splitlines()]
    assert created["id"] in [k["id"] for k in listed] and all("token" not in k for k in listed)
    assert _keys(config, "create", "--role", "operator").returncode == 2  # an operator key needs its account
    revoked = _keys(config, "revoke", created["id"])
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked"] is True
    assert (await api.call("cli", "GET", "/accounts/acme"))[0] == 401
    assert (await ApiKey.get(created["id"])).revoked_by == "cli"
    assert _keys(config, "revoke", created["id"]).returncode == 0  # again: nothing changes, nothing audited
    # both changes are in the audit log, as the operating-system user who ran the command
    audit = await AuditEntry.find({"target": created["id"]}).sort("+seq").to_list()
    assert [(e.action, e.method, e.account_id) for e in audit] == [("key.create", "CLI", "acme"),
                                                                   ("key.revoke", "CLI", "acme")]
    assert all(e.key_id.startswith("cli:") for e in audit)
    assert audit[0].after == {"role": "viewer", "name": "wallboard"} and audit[1].after["revoked_ms"] > 0
    status, got = await api.call("acme:viewer", "GET", "/audit")
    assert [e["action"] for e in got["items"]] == ["key.create", "key.revoke"]


async def test_batch_from_json_rows_uses_the_loaders_validation(api: Api) -> None:
    rows = [{"RUT": "11.111.111-1", "Nombre": "Ana", "Telefono": "+56987654321", "Monto": 1000},
            {"RUT": "12.345.678-5", "Nombre": "Luis", "Telefono": "987654322", "Monto": "2000"}]
    status, got = await api.call("acme:operator", "POST", "/batches",
                                 json={"account_id": "acme", "batch_id": "j1", "rows": rows,
                                       "call_settings": {"max_attempts": 2}})
    assert status == 201, got
    assert got["jobs_created"] == 2 and got["ok"] is True
    batch = await Batch.get("j1")
    assert batch.account_id == "acme" and batch.call_settings.max_attempts == 2
    jobs = await Job.find({"batch_id": "j1"}).to_list()
    assert sorted(j.person_key for j in jobs) == ["11111111-1", "12345678-5"]
    assert sorted(j.phones[0].number for j in jobs) == ["+56987654321", "+56987654322"]
    # a bad RUT is rejected by row, as in a spreadsheet: nothing loaded
    status, got = await api.call("acme:operator", "POST", "/batches",
                                 json={"account_id": "acme", "batch_id": "j2",
                                       "rows": [{"RUT": "12.345.678-9", "Nombre": "X", "Telefono": "+56987654323",
                                                 "Monto": 5}]})
    assert status == 422 and got.get("rejected_rows") == 1 and "rejected" in got["detail"], got
    assert await Batch.get("j2") is None
    # another account's batch id, another account, a bad body
    assert (await api.call("acme:operator", "POST", "/batches", json={"account_id": "acme", "batch_id": "b1",
                                                                     "rows": rows}))[0] == 409
    assert (await api.call("acme:operator", "POST", "/batches", json={"account_id": "beta", "batch_id": "x",
                                                                     "rows": rows}))[0] == 404
    status, got = await api.call("acme:operator", "POST", "/batches", json={"account_id": "acme", "batch_id": "x",
                                                                           "rows": []})
    assert status == 422 and got["problems"][0]["field"] == "rows"


async def test_top_up_limits(api: Api) -> None:
    status, got = await api.call("admin", "POST", "/accounts/acme/topup", json={"cents": 10**12})
    assert status == 422 and "limit" in got["detail"]
    status, got = await api.call("admin", "POST", "/accounts/acme/topup", json={"cents": 10**12 + 1})
    assert status == 422 and got["problems"][0]["field"] == "cents"
    assert (await Account.get("acme")).balance_cents == 100
    status, got = await api.call("admin", "POST", "/accounts/acme/topup", json={"cents": 10**10 - 100})
    assert status == 200 and got["balance_cents"] == 10**10
    assert (await api.call("admin", "POST", "/accounts/acme/topup", json={"cents": 1}))[0] == 422


async def test_batch_cancel_stops_dialing_and_is_final(api: Api) -> None:
    status, got = await api.call("acme:operator", "POST", "/batches/a1/cancel")
    assert status == 200 and got["status"] == "cancelled"
    assert (await Batch.get("a1")).status == BatchStatus.CANCELLED
    assert any("a1 cancelled" in w for w in api.wakes.reasons)
    for action in ("resume", "pause", "cancel"):
        assert (await api.call("acme:operator", "POST", f"/batches/a1/{action}"))[0] == 409
    # a job of the cancelled batch is not sent back to pending: it would never be dialed
    failed = next(j for j in api.jobs["acme"] if j.state == JobState.FAILED)
    status, got = await api.call("acme:operator", "POST", f"/jobs/{failed.id}/retry", json={"reason": "asked"})
    assert status == 409 and "batch 'a1' is cancelled" in got["detail"], got
    assert (await Job.get(failed.id)).state == JobState.FAILED


async def test_pause_reason_names_the_key(api: Api) -> None:
    status, _ = await api.call("acme:operator", "POST", "/batches/a1/pause")
    assert status == 200
    key_id = api.tokens["acme:operator"].split(".")[0]
    status, got = await api.call("acme:viewer", "GET", "/batches/a1")
    assert got["status_reason"] == f"paused by operator (key {key_id})"
    await api.call("admin", "POST", "/batches/a1/resume")
    assert (await Batch.get("a1")).status_reason == "active by operator (key control-token)"
