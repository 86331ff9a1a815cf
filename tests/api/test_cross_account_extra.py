"""Another account's operator key on the segment, dialing, paid, CRM and report routes: 404 as for
things that do not exist (never 403), nothing of the other account read or changed; an account's own
viewer and operator keys get their reports; the upload is audited in its account."""

from __future__ import annotations

import io
import json

import aiohttp
from openpyxl import load_workbook

from speechai.store.models import Batch, Job
from tests.api.conftest import Api
from tests.api.test_access import snapshot

SEGMENTS = {"segments": [{"name": "all"}]}


async def test_another_accounts_operator_gets_404_on_the_extra_routes(api: Api) -> None:
    status, contact = await api.call("acme:operator", "POST", "/crm/contacts",
                                     json={"account_id": "acme", "name": "Ana", "phone": "+56987654321"})
    assert status == 201, contact
    before = await snapshot("acme")
    rut = "12345678-5"
    attempts = [
        ("GET", "/batches/a1/segments", None), ("PUT", "/batches/a1/segments", SEGMENTS),
        ("PATCH", "/batches/a1/dialing", {"caller_id_daily_cap": 5}),
        ("POST", "/accounts/acme/paid", [rut]),
        ("POST", "/crm/contacts", {"account_id": "acme", "phone": "+56911112222"}),
        ("POST", "/crm/opportunities", {"account_id": "acme", "contact_id": contact["id"]}),
        ("POST", "/crm/opportunities", {"account_id": "beta", "contact_id": contact["id"]}),
        ("GET", f"/crm/opportunities?contact_id={contact['id']}", None),
        ("GET", "/reports/summary?account=acme", None), ("GET", "/reports/summary?batch=a1", None),
        ("GET", "/reports/summary.xlsx?account=acme", None), ("GET", "/reports/summary.xlsx?batch=a1", None),
        ("GET", "/reports/summary?batch=a1&account=beta", None),
    ]
    for method, path, body in attempts:
        status, got = await api.call("beta:operator", method, path, json=body)
        assert status == 404, (method, path, status, got)
        assert got["status"] == 404 and "no " in got["detail"], got
        # the answer for acme's batch is the one for a batch that does not exist
        if "a1" in path:
            status, missing = await api.call("beta:operator", method, path.replace("a1", "zz"), json=body)
            assert (status, missing["detail"]) == (404, got["detail"].replace("a1", "zz")), missing
    assert await snapshot("acme") == before
    assert (await Batch.get("a1")).caller_id_daily_cap is None
    assert {j.state for j in await Job.find({"account_id": "acme"}).to_list()} == {j.state for j in api.jobs["acme"]}


async def test_reports_of_an_accounts_own_keys_cover_only_that_account(api: Api) -> None:
    for who in ("beta:operator", "beta:viewer"):
        status, got = await api.call(who, "GET", "/reports/summary")
        assert status == 200, got
        assert got["filter"]["account"] == "beta"  # no filter: the key's own account, never all
        [totals] = got["sections"]["totals"]["rows"]
        assert totals["jobs"] == 4, totals  # beta's 4 jobs, not acme's as well
        status, got = await api.call(who, "GET", "/reports/summary?batch=b1")
        assert status == 200 and got["filter"] == {"batch": "b1", "account": "beta", "from": None, "to": None}
    status, got = await api.call("admin", "GET", "/reports/summary")
    assert status == 200 and got["filter"]["account"] is None
    assert got["sections"]["totals"]["rows"][0]["jobs"] == 8
    assert (await api.call("beta:billing", "GET", "/reports/summary"))[0] == 403
    async with aiohttp.ClientSession() as http, http.get(api.base + "/reports/summary.xlsx",
                                                          headers=api.headers("acme:viewer")) as r:
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        assert "acme" in r.headers["Content-Disposition"]
        load_workbook(io.BytesIO(await r.read()))
    status, got = await api.call("acme:viewer", "GET", "/reports/summary?from=2026-03-05&to=2026-03-01")
    assert status == 422 and "is after to" in got["detail"]


async def test_the_upload_is_audited_in_its_account_naming_the_batch(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("account", "acme")
    form.add_field("batch_id", "up1")
    form.add_field("file", b"nombre,telefono\nAna,+56987654321\nBeto,+56987654322\n", filename="people.csv")
    status, got = await api.call("acme:operator", "POST", "/batches/upload", data=form)
    assert status == 200 and got["ok"] and got["jobs_created"] == 2, got
    status, page = await api.call("acme:viewer", "GET", "/audit")
    assert status == 200
    [entry] = [e for e in page["items"] if e["action"] == "batch.upload"]
    assert (entry["account_id"], entry["target"], entry["status"]) == ("acme", "up1", 200)
    assert entry["after"]["jobs_created"] == 2
    status, page = await api.call("beta:viewer", "GET", "/audit")
    assert status == 200 and not [e for e in page["items"] if e["action"] == "batch.upload"]


async def test_an_ab_weight_past_the_bound_is_422_naming_the_field(api: Api) -> None:
    arm = {"agent_id": "agent_a", "weight": 1}
    for weight in (10**30, 1_000_001, 1e300):
        change = {"agent_split": [arm, {"agent_id": "agent_b", "weight": weight}]}
        status, got = await api.call("acme:operator", "PATCH", "/batches/a1/dialing", json=change)
        assert status == 422 and "agent_split" in got["detail"], (weight, got)
        assert got["problems"][0]["field"].startswith("agent_split"), got
    # NaN and Infinity are not JSON: the strict reader refuses them before any model
    for text in ('{"agent_split": [{"agent_id": "a", "weight": NaN}]}', '{"caller_id_daily_cap": Infinity}'):
        status, got = await api.call("acme:operator", "PATCH", "/batches/a1/dialing", data=text.encode(),
                                     headers={"Content-Type": "application/json"})
        assert status == 400 and "not acceptable JSON" in got["detail"], got
    deep = ("[" * 5000 + "]" * 5000).encode()
    status, got = await api.call("acme:operator", "POST", "/accounts/acme/paid", data=deep,
                                 headers={"Content-Type": "application/json"})
    assert status == 400 and "nested deeper" in got["detail"], got
    ok = {"agent_split": [arm, {"agent_id": "agent_b", "weight": 1_000_000}]}
    status, got = await api.call("acme:operator", "PATCH", "/batches/a1/dialing", json=ok)
    assert status == 200 and got["agent_split"][1]["weight"] == 1_000_000, got
    assert json.dumps(got)  # a shaped answer


async def test_a_role_refused_key_gets_404_for_another_accounts_subscription_or_delivery(api: Api) -> None:
    from speechai.store.outbox_models import Delivery, Subscription

    await Subscription.get_pymongo_collection().insert_one({"_id": "sub_acme", "account_id": "acme"})
    await Delivery.get_pymongo_collection().insert_one({"_id": "dlv_acme", "account_id": "acme"})
    writes = [("PATCH", "/webhooks/subscriptions/sub_acme", {"active": False}),
              ("DELETE", "/webhooks/subscriptions/sub_acme", None),
              ("POST", "/webhooks/deliveries/dlv_acme/replay", None)]
    for method, path, body in writes:
        status, got = await api.call("beta:viewer", method, path, json=body)  # a viewer may not write at all
        assert status == 404, (method, path, got)
        status, missing = await api.call("beta:viewer", method, path.replace("_acme", "_none"), json=body)
        assert (status, missing["detail"]) == (404, got["detail"].replace("_acme", "_none"))
        status, _ = await api.call("acme:viewer", method, path, json=body)  # its own account's: the role
        assert status == 403, (method, path)
    assert await Subscription.get_pymongo_collection().count_documents({"_id": "sub_acme"}) == 1
