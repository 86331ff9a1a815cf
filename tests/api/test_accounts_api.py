"""Accounts over real HTTP: creating one (admin keys only, audited, 409 when it exists) and its plan
(set by admin or billing keys, never by an operator key)."""

from __future__ import annotations

import aiohttp

from speechai.store.api_models import AuditEntry
from speechai.store.models import Account, Plan
from tests.api.conftest import Api


async def test_admin_creates_an_account_once_and_it_is_audited(api: Api) -> None:
    body = {"id": "gamma", "name": "Gamma SpA", "plan": "minutes", "max_concurrent_calls": 7,
            "daily_call_limit": 500}
    for who in ("acme:operator", "acme:billing", "acme:viewer"):
        status, got = await api.call(who, "POST", "/accounts", json=body)
        assert status == 403, (who, got)  # instance-wide: the role decides
    assert await Account.get("gamma") is None
    status, got = await api.call("admin", "POST", "/accounts", json=body)
    assert status == 201, got
    shown = (got["id"], got["plan"], got["max_concurrent_calls"], got["daily_call_limit"])
    assert shown == ("gamma", "minutes", 7, 500)
    stored = await Account.get("gamma")
    assert stored.plan == Plan.MINUTES and stored.balance_cents == 0 and stored.name == "Gamma SpA"
    status, got = await api.call("admin", "POST", "/accounts", json={**body, "plan": "credits"})
    assert status == 409 and "exists" in got["detail"]
    assert (await Account.get("gamma")).plan == Plan.MINUTES
    assert (await api.call("admin", "POST", "/accounts", json={"id": "acme"}))[0] == 409
    for bad in ({"id": "has space"}, {"id": ""}, {"id": "x", "plan": "free"}, {"id": "x", "max_concurrent_calls": 0},
                {"id": "x", "extra": 1}):
        status, got = await api.call("admin", "POST", "/accounts", json=bad)
        assert status == 422, (bad, got)
    [entry] = await AuditEntry.find({"action": "account.create"}).to_list()
    assert (entry.key_id, entry.account_id, entry.target) == ("control-token", "gamma", "gamma")
    assert entry.after["plan"] == "minutes" and entry.after["max_concurrent_calls"] == 7
    # documented from the same model that validates it
    async with aiohttp.ClientSession() as http, http.get(api.base + "/openapi.json") as r:
        doc = await r.json()
    op = doc["paths"]["/accounts"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/AccountCreateRequest")
    assert "201" in op["responses"] and "409" in op["responses"]
    assert "plan" in doc["components"]["schemas"]["AccountSettingsRequest"]["properties"]


async def test_plan_is_set_by_admin_or_billing_not_operator(api: Api) -> None:
    status, got = await api.call("acme:operator", "PATCH", "/accounts/acme/settings", json={"plan": "unlimited"})
    assert status == 403 and "plan" in got["detail"]
    assert (await Account.get("acme")).plan == Plan.CREDITS
    status, got = await api.call("acme:billing", "PATCH", "/accounts/acme/settings", json={"plan": "minutes"})
    assert status == 200, got
    assert got["plan"] == "minutes" and got["changes"]["plan"] == {"before": "credits", "after": "minutes"}
    assert (await Account.get("acme")).plan == Plan.MINUTES
    # billing sets the plan only
    status, got = await api.call("acme:billing", "PATCH", "/accounts/acme/settings",
                                 json={"plan": "credits", "max_concurrent_calls": 99})
    assert status == 403 and "max_concurrent_calls" in got["detail"]
    assert (await Account.get("acme")).max_concurrent_calls == 20
    status, got = await api.call("admin", "PUT", "/accounts/acme/settings",
                                 json={"plan": "unlimited", "max_concurrent_calls": 3})
    assert status == 200 and got["plan"] == "unlimited" and got["max_concurrent_calls"] == 3
    assert (await api.call("admin", "PATCH", "/accounts/acme/settings", json={"plan": None}))[0] == 422
    assert (await api.call("admin", "PATCH", "/accounts/acme/settings", json={"plan": "free"}))[0] == 422
    # another account's billing key: as if acme did not exist
    status, got = await api.call("beta:billing", "PATCH", "/accounts/acme/settings", json={"plan": "credits"})
    assert status == 404
    assert (await Account.get("acme")).plan == Plan.UNLIMITED
    plans = [(e.key_id.startswith("key_"), e.before, e.after) for e in
             await AuditEntry.find({"action": "account.settings", "account_id": "acme"}).sort("+seq").to_list()]
    assert plans[0] == (True, {"plan": "credits"}, {"plan": "minutes"})
    assert plans[1][1:] == ({"plan": "minutes", "max_concurrent_calls": 20},
                            {"plan": "unlimited", "max_concurrent_calls": 3})
