"""``speechai webhooks`` from a real subprocess against the embedded server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from speechai.store.models import Account
from speechai.store.outbox_models import Delivery, Subscription


def _hooks(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "speechai.cli", "webhooks", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


async def test_webhooks_command(db, mongo_uri: str, tmp_path: Path) -> None:
    await Account(id="acme").insert()
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[mongo]\nuri = "{mongo_uri}"\ndatabase = "{db.name}"\n')
    refused = _hooks(config, "create", "--account", "acme", "--url", "http://10.0.0.5/hook", "--events", "*")
    assert refused.returncode == 2 and "private or loopback" in refused.stderr
    unknown = _hooks(config, "create", "--account", "acme", "--url", "https://crm.example.com/h", "--events", "bogus")
    assert unknown.returncode == 2 and "unknown event type" in unknown.stderr
    made = _hooks(config, "create", "--account", "acme", "--url", "https://crm.example.com/h",
                  "--events", "job.done", "promise_to_pay")
    assert made.returncode == 0, made.stderr
    sub = json.loads(made.stdout)
    assert sub["secret"].startswith("whsec_") and sub["events"] == ["job.done", "promise_to_pay"]
    listed = [json.loads(x) for x in _hooks(config, "list", "--account", "acme").stdout.splitlines()]
    assert [x["id"] for x in listed] == [sub["id"]] and "secret" not in listed[0]
    assert _hooks(config, "disable", sub["id"]).returncode == 0
    assert (await Subscription.get(sub["id"])).active is False
    await Delivery(id=f"e1>{sub['id']}", event_id="e1", subscription_id=sub["id"], account_id="acme",
                   type="job.done", state="failed", next_ms=0, created_ms=1).insert()
    assert _hooks(config, "enable", sub["id"]).returncode == 0
    replayed = _hooks(config, "replay", sub["id"])
    assert replayed.returncode == 0 and json.loads(replayed.stdout)["replayed"] == 1
    d = await Delivery.get(f"e1>{sub['id']}")
    assert d.state == "pending" and d.next_ms > 0
    assert _hooks(config, "enable", "sub_nope").returncode == 1
