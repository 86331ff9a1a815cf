"""The dialing fields over the control API (real HTTP, embedded server): the account's settings route and
``PATCH /batches/{id}/dialing``; every bound refused with 422 naming the field and the value; audited."""

from __future__ import annotations

import pytest

from speechai.domain.settings import CallSettings
from speechai.store.api_models import AuditEntry
from speechai.store.models import Account, Batch, CallerId
from tests.dialing.conftest import LANDLINE, MONDAY_0900

SETTINGS = "/accounts/acme/settings"


async def test_account_dialing_fields_are_set_and_shown(dialing_api) -> None:
    api = dialing_api
    change = {"caller_ids": [{"number": "+566001000001", "region": "RM"}, {"number": "+14155550100"}],
              "caller_id_daily_cap": 150, "reserved_inbound_calls": 2, "max_dials_per_second": 5,
              "predial_url": "https://creditor.example/predial", "predial_timeout_s": 1.5,
              "predial_on_error": "call", "predial_skip_delay_min": 30}
    status, body = await api.call("acme:operator", "PATCH", SETTINGS, json=change)
    assert status == 200, body
    assert set(body["changes"]) == set(change)
    status, shown = await api.call("acme:viewer", "GET", "/accounts/acme")
    stored = {**change, "caller_ids": [{"number": "+566001000001", "region": "RM"},
                                       {"number": "+14155550100", "region": None}]}
    assert status == 200 and {k: shown[k] for k in change} == stored
    account = await Account.get("acme")
    assert account.caller_ids == [CallerId(number="+566001000001", region="RM"), CallerId(number="+14155550100")]
    assert account.max_dials_per_second == 5 and account.predial_timeout_s == 1.5
    [entry] = await AuditEntry.find({"account_id": "acme", "action": "account.settings"}).to_list()
    assert entry.before["caller_ids"] == [] and entry.after["max_dials_per_second"] == 5

    # null clears what may be unset; an unchanged value is no change
    status, body = await api.call("acme:operator", "PATCH", SETTINGS,
                                  json={"caller_ids": None, "max_dials_per_second": None, "predial_url": None,
                                        "caller_id_daily_cap": 150})
    assert status == 200 and set(body["changes"]) == {"caller_ids", "max_dials_per_second", "predial_url"}
    account = await Account.get("acme")
    assert account.caller_ids == [] and account.max_dials_per_second is None and account.predial_url is None
    assert "caller ids" not in " ".join(api.wakes.reasons)  # the scheduler is told through the control API


@pytest.mark.parametrize(("field", "value", "says"), [
    ("caller_id_daily_cap", 0, "from 1 to 10000"),
    ("caller_id_daily_cap", 10_001, "from 1 to 10000"),
    ("max_dials_per_second", 5000, "from 1 to 1000"),
    ("reserved_inbound_calls", -1, "from 0 to 10000"),
    ("reserved_inbound_calls", None, "may not be null"),
    ("predial_timeout_s", 60, "from 0.1 to 30"),
    ("predial_skip_delay_min", 0, "from 1 to 10080"),
    ("predial_url", "ftp://creditor.example/x", "http(s) URL"),
    ("caller_ids", [{"number": "229000000"}], "E.164"),
    ("caller_ids", [{"number": "+566001000001", "region": ""}], "1 to 16 characters"),
])
async def test_account_dialing_bounds_answer_422_naming_field_and_value(dialing_api, field, value, says) -> None:
    status, body = await dialing_api.call("acme:operator", "PATCH", SETTINGS, json={field: value})
    assert status == 422, body
    assert field in body["detail"] and says in body["detail"]
    [problem] = body["problems"]
    assert problem["field"] == field
    if field == "caller_ids":  # the entry as read, its region filled in
        assert [e["number"] for e in problem["value"]] == [e["number"] for e in value]
    else:
        assert problem["value"] == value
    assert (await Account.get("acme")).model_dump()[field] == Account(id="x").model_dump()[field]  # unchanged


async def test_account_settings_type_errors_and_other_accounts(dialing_api) -> None:
    status, body = await dialing_api.call("acme:operator", "PATCH", SETTINGS, json={"predial_on_error": "retry"})
    assert status == 422 and body["problems"][0]["field"] == "predial_on_error"
    status, _ = await dialing_api.call("acme:viewer", "PATCH", SETTINGS, json={"max_dials_per_second": 3})
    assert status == 403
    status, _ = await dialing_api.call("beta:operator", "PATCH", SETTINGS, json={"max_dials_per_second": 3})
    assert status == 404


async def _batch(batch_id: str = "b1", account: str = "acme", **fields) -> None:
    await Batch(id=batch_id, account_id=account, call_settings=CallSettings(), created_at=MONDAY_0900,
                **fields).insert()


async def test_batch_dialing_fields_validated_checked_against_chile_and_audited(dialing_api) -> None:
    api = dialing_api
    await _batch(from_number=LANDLINE)
    path = "/batches/b1/dialing"
    arms = [{"agent_id": "agent_a", "weight": 1}, {"agent_id": "agent_b", "weight": 3}]
    status, body = await api.call("acme:operator", "PATCH", path, json={"agent_split": arms, "caller_id_daily_cap": 40})
    assert status == 200, body
    batch = await Batch.get("b1")
    assert [(a.agent_id, a.weight) for a in batch.agent_split] == [("agent_a", 1), ("agent_b", 3)]
    assert batch.caller_id_daily_cap == 40 and api.wakes.reasons

    for change, field, says in [
        ({"agent_split": arms[:1]}, "agent_split", "1 arms; allowed 2 to 4"),
        ({"agent_split": [arms[0], arms[0]]}, "agent_split", "distinct"),
        ({"agent_split": [arms[0], {"agent_id": "agent_c", "weight": 0}]}, "agent_split", "positive"),
        ({"use_case": "telemarketing"}, "use_case", "'telemarketing'"),
        ({"caller_id_daily_cap": 0}, "caller_id_daily_cap", "from 1 to 10000"),
        ({"caller_ids": [{"number": "600100"}]}, "caller_ids", "E.164"),
    ]:
        status, body = await api.call("acme:operator", "PATCH", path, json=change)
        assert status == 422 and says in body["detail"], (change, body)
        assert body["problems"][0]["field"] == field, body

    # a collection batch calling from a landline breaks the Chile rule: refused, naming rule and number
    status, body = await api.call("acme:operator", "PATCH", path, json={"use_case": "collection"})
    assert status == 422 and "CL-600" in body["detail"] and LANDLINE in body["detail"]
    assert (await Batch.get("b1")).use_case is None
    pool = [{"number": "+566001000001", "region": "RM"}]
    status, body = await api.call("acme:operator", "PATCH", path, json={"use_case": "collection", "caller_ids": pool})
    assert status == 200 and body["use_case"] == "collection" and body["caller_ids"] == pool
    entries = await AuditEntry.find({"action": "batch.dialing", "target": "b1"}).sort("+seq").to_list()
    assert entries[-1].before == {"use_case": None, "caller_ids": []}
    assert entries[-1].after == {"use_case": "collection", "caller_ids": pool}

    # with the account's override the same change is accepted, and the audit says it was overridden
    await Account.get_pymongo_collection().update_one({"_id": "acme"}, {"$set": {"chile_rule_override": "LEG-12"}})
    status, body = await api.call("acme:operator", "PATCH", path, json={"caller_ids": []})
    assert status == 200 and body["caller_ids"] == []
    last = (await AuditEntry.find({"action": "batch.dialing", "target": "b1"}).sort("-seq").limit(1).to_list())[0]
    assert last.detail.get("chile_rule_overridden") is True

    await _batch("x1", account="beta")
    status, _ = await api.call("acme:operator", "PATCH", "/batches/x1/dialing", json={"caller_id_daily_cap": 3})
    assert status == 404
