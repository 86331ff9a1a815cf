"""``speechai keys create|list|revoke``: API keys managed from the command line (the database of the
configuration; the token of a new key is printed once and stored only as a hash)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from speechai.api.auth import create_key, revoke_key
from speechai.store.api_models import ApiKey, Role
from speechai.store.models import Account


def _row(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "role": key.role.value, "account_id": key.account_id, "name": key.name,
            "created_at": key.created_at.isoformat(), "created_by": key.created_by,
            "revoked": key.revoked_ms is not None}


async def run_keys(config: Any, action: str, *, role: str | None = None, account: str | None = None,
                   name: str = "", key_id: str | None = None, out: TextIO | None = None,
                   err: TextIO | None = None) -> int:
    from speechai.runtime.service import database, make_clock

    out, err = out or sys.stdout, err or sys.stderr
    async with database(config):
        if action == "create":
            chosen = Role(role or "")
            if chosen != Role.ADMIN and not account:
                print(f"speechai: a {chosen.value} key needs --account", file=err)
                return 2
            if chosen == Role.ADMIN and account:
                print("speechai: an admin key covers every account; leave out --account", file=err)
                return 2
            if account and await Account.get(account) is None:
                print(f"speechai: no account {account!r}", file=err)
                return 1
            key, token = await create_key(role=chosen, account_id=account or None, name=name, created_by="cli",
                                          now=make_clock(config).now())
            print(json.dumps({**_row(key), "token": token}), file=out)
            print("the token is shown only now: keep it in a secret store", file=err)
            return 0
        if action == "list":
            query = {"account_id": account} if account else {}
            for key in await ApiKey.find(query).sort("+_id").to_list():
                print(json.dumps(_row(key)), file=out)
            return 0
        found = await revoke_key(key_id or "", revoked_by="cli")
        if found is None:
            print(f"speechai: no key {key_id!r}", file=err)
            return 1
        print(json.dumps(_row(found)), file=out)
        return 0
