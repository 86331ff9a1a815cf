"""``speechai keys create|list|revoke``: API keys managed from the command line (the database of the
configuration; the token of a new key is printed once and stored only as a hash)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import structlog

from speechai.api.audit import record_command
from speechai.api.auth import create_key, revoke_key
from speechai.logs import configure_logging
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
    if not structlog.is_configured():
        # the audit line goes to the configured log (stderr by default), never into the JSON on stdout
        configure_logging(config.logging.level, config.logging.format, config.logging.file)
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
            now = make_clock(config).now()
            key, token = await create_key(role=chosen, account_id=account or None, name=name, created_by="cli",
                                          now=now)
            # the same audit log as the API's key.create (who: the operating-system user)
            await record_command("key.create", f"speechai keys create --role {chosen.value}", now,
                                 account_id=key.account_id, target=key.id,
                                 after={"role": key.role.value, "name": key.name})
            print(json.dumps({**_row(key), "token": token}), file=out)
            print("the token is shown only now: keep it in a secret store", file=err)
            return 0
        if action == "list":
            query = {"account_id": account} if account else {}
            for key in await ApiKey.find(query).sort("+_id").to_list():
                print(json.dumps(_row(key)), file=out)
            return 0
        before = await ApiKey.get(key_id or "")
        found = await revoke_key(key_id or "", revoked_by="cli")
        if found is None:
            print(f"speechai: no key {key_id!r}", file=err)
            return 1
        if before is not None and before.revoked_ms is None:  # a second revoke changes nothing
            await record_command("key.revoke", f"speechai keys revoke {found.id}", make_clock(config).now(),
                                 account_id=found.account_id, target=found.id,
                                 after={"revoked_ms": found.revoked_ms})
        print(json.dumps(_row(found)), file=out)
        return 0
