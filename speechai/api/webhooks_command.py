"""``speechai webhooks list|create|enable|disable|deliveries|replay``: outbound webhook subscriptions
managed from the command line, on the configuration's database (docs/integrations.md)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from speechai.integrations.delivery import replay
from speechai.integrations.ssrf import TargetRefused
from speechai.integrations.subscriptions import subscribe
from speechai.store.models import Account, epoch_ms
from speechai.store.outbox_models import Delivery, Subscription


def _row(sub: Subscription) -> dict[str, Any]:
    return {"id": sub.id, "account_id": sub.account_id, "url": sub.url, "events": sub.events,
            "active": sub.active, "disabled_reason": sub.disabled_reason, "failures_in_row": sub.failures_in_row}


async def run_webhooks(config: Any, action: str, *, account: str | None = None, url: str | None = None,
                       events: list[str] | None = None, sub_id: str | None = None, state: str | None = None,
                       out: TextIO | None = None, err: TextIO | None = None) -> int:
    from speechai.runtime.service import database, make_clock

    out, err = out or sys.stdout, err or sys.stderr
    now_ms = epoch_ms(make_clock(config).now())
    async with database(config):
        if action == "create":
            if not account or await Account.get(account) is None:
                print(f"speechai: no account {account!r}", file=err)
                return 1
            try:
                sub = await subscribe(account, url or "", events or [],
                                      allow_private=config.integrations.allow_private_targets, now_ms=now_ms)
            except (TargetRefused, ValueError) as exc:
                print(f"speechai webhooks create: {exc}", file=err)
                return 2
            print(json.dumps({**_row(sub), "secret": sub.secret}), file=out)
            print("the secret is shown only now: give it to the receiver to verify signatures", file=err)
            return 0
        if action == "list":
            for sub in await Subscription.find({"account_id": account} if account else {}).sort("+_id").to_list():
                print(json.dumps(_row(sub)), file=out)
            return 0
        sub = await Subscription.get(sub_id or "")
        if sub is None:
            print(f"speechai: no subscription {sub_id!r}", file=err)
            return 1
        if action in ("enable", "disable"):
            change = {"active": True, "disabled_reason": None, "failures_in_row": 0} if action == "enable" \
                else {"active": False, "disabled_reason": "disabled from the command line"}
            await Subscription.get_pymongo_collection().update_one({"_id": sub.id}, {"$set": change})
            print(json.dumps({**_row(sub), **change}), file=out)
            return 0
        if action == "deliveries":
            query: dict[str, Any] = {"subscription_id": sub.id}
            if state:
                query["state"] = state
            async for d in Delivery.get_pymongo_collection().find(query).sort("_id", 1):
                last = (d.get("attempts") or [{}])[-1]
                print(json.dumps({"id": d["_id"], "type": d["type"], "state": d["state"], "tries": d["tries"],
                                  "last_status": last.get("status"), "last_error": last.get("error")}), file=out)
            return 0
        n = await replay({"subscription_id": sub.id, "state": state or "failed"}, now_ms)  # action == "replay"
        print(json.dumps({"subscription_id": sub.id, "replayed": n}), file=out)
        return 0
