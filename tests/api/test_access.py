"""Keys, roles and accounts over real HTTP: another account's things look absent (404), roles are held,
a revoked key stops at once, and every state-changing route leaves an audit entry."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from speechai.store.api_models import ApiKey, AuditEntry
from speechai.store.models import Account, Batch, DoNotCall, Job, JobState
from tests.api.conftest import Api


def acme_routes(api: Api) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route, aimed at account acme's things, with a body that would succeed."""
    pending, failed, done, _in_flight = (str(j.id) for j in api.jobs["acme"])
    return [
        ("GET", "/batches?account_id=acme", None), ("GET", "/batches/a1", None),
        ("POST", "/batches/a1/pause", None), ("POST", "/batches/a1/resume", None),
        ("PUT", "/batches/a1/settings", {"max_attempts": 2}), ("PATCH", "/batches/a1/settings", {"max_attempts": 3}),
        ("GET", "/jobs?account_id=acme", None), ("GET", "/jobs?batch_id=a1", None), ("GET", f"/jobs/{pending}", None),
        ("GET", f"/jobs/{pending}/attempts", None),
        ("POST", f"/jobs/{failed}/retry", {"reason": "customer asked"}),
        ("POST", f"/jobs/{pending}/cancel", {"reason": "asked"}),
        ("GET", "/accounts/acme", None), ("PUT", "/accounts/acme/settings", {"max_concurrent_calls": 5}),
        ("PATCH", "/accounts/acme/settings", {"daily_call_limit": 9}),
        ("POST", "/accounts/acme/topup", {"cents": 5}),
        ("GET", "/accounts/acme/do-not-call", None), ("POST", "/accounts/acme/do-not-call", {"key": "+56911110000"}),
        ("GET", "/audit?account_id=acme", None),
        ("POST", "/batches", {"account_id": "acme", "batch_id": "a2",
                              "rows": [{"nombre": "Ana", "telefono": "+56987654321"}]}),
        ("POST", f"/jobs/{done}/retry", {"reason": "again", "force": True}),
        ("POST", "/batches/a1/cancel", None),
    ]


def admin_only_routes() -> list[tuple[str, str, dict[str, Any] | None]]:
    """Instance-wide routes (admin keys only): any other key gets 403 from its role, about nothing of
    any account."""
    return [("GET", "/accounts", None), ("POST", "/accounts", {"id": "acme"}), ("GET", "/keys", None),
            ("POST", "/keys", {"role": "admin"}), ("DELETE", "/keys/control-token", None),
            ("POST", "/extra/undeclared", None)]


def other_account_routes() -> list[tuple[str, str, dict[str, Any] | None]]:
    """Routes of other modules aimed at acme, and a path that does not exist (upload: see below)."""
    return [("GET", "/extra/acme/thing", None), ("GET", "/nowhere", None)]


async def snapshot(account: str) -> str:
    """Everything stored for ``account`` (its account, batches, jobs, do-not-call, audit entries)."""
    parts = [await Account.get_pymongo_collection().find_one({"_id": account})]
    for model in (Batch, Job, DoNotCall, AuditEntry):
        parts.append(await model.get_pymongo_collection().find({"account_id": account}).sort("_id", 1).to_list())
    return json.dumps(parts, default=str, sort_keys=True)


async def test_another_accounts_keys_neither_read_nor_write(api: Api) -> None:
    before = await snapshot("acme")
    for who in ("beta:operator", "beta:viewer", "beta:billing"):
        for method, path, body in acme_routes(api):
            status, got = await api.call(who, method, path, json=body)
            # 404 exactly as for a thing that does not exist, whatever the key's role may do
            assert status == 404, (who, method, path, status, got)
            assert "name" not in got and "items" not in got, got
            assert got["detail"].startswith("no "), got
        for method, path, body in other_account_routes():
            status, got = await api.call(who, method, path, json=body)
            assert status == 404, (who, method, path, status, got)
        for method, path, body in admin_only_routes():
            status, got = await api.call(who, method, path, json=body)
            assert status == 403, (who, method, path, status, got)
    assert await snapshot("acme") == before
    # a refused role on a thing of the key's own account is the role's 403, on a missing thing a 404
    assert (await api.call("acme:viewer", "POST", "/batches/a1/pause"))[0] == 403
    assert (await api.call("acme:viewer", "POST", "/batches/nope/pause"))[0] == 404
    # the same paths do work for acme's operator (the refusals were about the account, not the path)
    status, _ = await api.call("acme:operator", "GET", "/batches/a1")
    assert status == 200


async def test_lists_show_only_the_keys_account(api: Api) -> None:
    for path, key in (("/batches", "account_id"), ("/jobs", "account_id"), ("/audit", "account_id")):
        status, got = await api.call("beta:viewer", "GET", path)
        assert status == 200, (path, got)
        assert all(item[key] == "beta" for item in got["items"]), (path, got)
    status, got = await api.call("admin", "GET", "/jobs")
    assert {j["account_id"] for j in got["items"]} == {"acme", "beta"}


async def test_every_mutating_route_is_audited_with_who_and_before_after(api: Api) -> None:
    for method, path, body in acme_routes(api):
        if method == "GET":
            continue
        status, got = await api.call("admin" if path.endswith(("topup",)) else "acme:operator", method, path,
                                     json=body)
        assert status in (200, 201, 202), (method, path, got)
    entries = await AuditEntry.find({"account_id": "acme"}).sort("+seq").to_list()
    actions = [e.action for e in entries]
    assert actions == ["batch.pause", "batch.resume", "batch.settings", "batch.settings", "job.retry", "job.cancel",
                       "account.settings", "account.settings", "account.topup", "do_not_call.add", "batch.create",
                       "job.retry", "batch.cancel"], actions
    assert [e.seq for e in entries] == sorted({e.seq for e in entries})
    settings = entries[2]
    assert settings.before == {"max_attempts": 3} or settings.before["max_attempts"] != 2
    assert settings.after == {"max_attempts": 2}
    operator_key = api.tokens["acme:operator"].split(".")[0]
    assert {e.key_id for e in entries} == {operator_key, "control-token"}
    forced = entries[-2]
    assert forced.detail["forced"] is True and forced.before["state"] == "done"
    topup = entries[8]
    assert (topup.before["balance_cents"], topup.after["balance_cents"]) == (100, 105)
    # readable per account over the API, paged
    status, page1 = await api.call("acme:viewer", "GET", "/audit?limit=5")
    status, page2 = await api.call("acme:viewer", "GET", f"/audit?limit=5&cursor={page1['next_cursor']}")
    assert [e["action"] for e in page1["items"] + page2["items"]] == actions[:10]
    status, beta = await api.call("beta:viewer", "GET", "/audit")
    assert beta["items"] == []


async def test_roles_hold(api: Api) -> None:
    batch_before = await Batch.get("a1")
    for method, path, body in acme_routes(api):
        if method != "GET":
            status, _ = await api.call("acme:viewer", method, path, json=body)
            assert status == 403, (method, path)
    assert await Batch.get("a1") == batch_before
    assert (await api.call("acme:billing", "POST", "/accounts/acme/topup", json={"cents": 7}))[0] == 200
    assert (await api.call("acme:billing", "POST", "/batches/a1/pause"))[0] == 403
    assert (await api.call("acme:operator", "POST", "/accounts/acme/topup", json={"cents": 7}))[0] == 403
    for who in ("acme:operator", "acme:viewer", "acme:billing"):
        assert (await api.call(who, "GET", "/keys"))[0] == 403
        assert (await api.call(who, "POST", "/keys", json={"role": "admin"}))[0] == 403
        assert (await api.call(who, "GET", "/accounts"))[0] == 403
    assert (await Account.get("acme")).balance_cents == 107


async def test_keys_are_shown_once_stored_as_hashes_and_revoked_at_once(api: Api) -> None:
    status, created = await api.call("admin", "POST", "/keys", json={"role": "operator", "account_id": "acme",
                                                                     "name": "ops desk"})
    assert status == 201 and created["token"].startswith(created["id"] + ".")
    stored = await ApiKey.get_pymongo_collection().find_one({"_id": created["id"]})
    secret = created["token"].split(".", 1)[1]
    assert secret not in json.dumps(stored, default=str) and len(stored["secret_sha256"]) == 64
    status, listed = await api.call("admin", "GET", "/keys?account_id=acme")
    assert created["id"] in [k["id"] for k in listed["items"]]
    assert secret not in json.dumps(listed)
    assert all("token" not in k and "secret_sha256" not in k for k in listed["items"])
    api.tokens["new"] = created["token"]
    assert (await api.call("new", "GET", "/accounts/acme"))[0] == 200
    assert (await api.call("new", "GET", "/accounts/acme"))[0] == 200
    status, revoked = await api.call("admin", "DELETE", f"/keys/{created['id']}")
    assert status == 200 and revoked["revoked"] is True
    status, got = await api.call("new", "GET", "/accounts/acme")  # the very next request
    assert status == 401, got
    audit = await AuditEntry.find({"target": created["id"]}).sort("+seq").to_list()
    assert [(e.action, e.key_id, e.account_id) for e in audit] == [("key.create", "control-token", "acme"),
                                                                   ("key.revoke", "control-token", "acme")]
    api.tokens["forged"] = created["id"] + ".x" + secret[1:]
    assert (await api.call("forged", "GET", "/accounts/acme"))[0] == 401
    for body in ({"role": "viewer"}, {"role": "admin", "account_id": "acme"}, {"role": "boss", "account_id": "acme"}):
        assert (await api.call("admin", "POST", "/keys", json=body))[0] == 422, body
    assert (await api.call("admin", "POST", "/keys", json={"role": "viewer", "account_id": "ghost"}))[0] == 404


async def test_open_routes_and_rate_limit(api: Api) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for path in ("/health", "/openapi.json", "/docs"):
            async with http.get(api.base + path) as r:
                assert r.status == 200, path
        async with http.get(api.base + "/batches") as r:
            assert r.status == 401 and r.content_type == "application/problem+json"
            assert (await r.json())["title"] == "Unauthorized"
    api.api.limiter.rate, api.api.limiter.burst = 0.5, 3
    api.api.limiter._buckets.clear()
    statuses = [(await api.call("acme:viewer", "GET", "/accounts/acme"))[0] for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    async with aiohttp.ClientSession() as http, http.get(api.base + "/accounts/acme",
                                                         headers=api.headers("acme:viewer")) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        assert (await r.json())["retry_after_s"] > 0
    # another key has its own bucket
    assert (await api.call("beta:viewer", "GET", "/accounts/beta"))[0] == 200


async def test_job_actions_respect_state_and_version(api: Api) -> None:
    _pending, failed, done, in_flight = api.jobs["acme"]
    status, got = await api.call("acme:operator", "POST", f"/jobs/{done.id}/retry", json={"reason": "x"})
    assert status == 409 and "force" in got["detail"]
    status, got = await api.call("acme:operator", "POST", f"/jobs/{in_flight.id}/retry", json={"reason": "x"})
    assert status == 409
    status, got = await api.call("acme:operator", "POST", f"/jobs/{failed.id}/retry", json={})
    assert status == 422 and got["problems"][0]["field"] == "reason"
    status, got = await api.call("acme:operator", "POST", f"/jobs/{failed.id}/retry", json={"reason": "asked"})
    assert status == 200 and got["state"] == "pending" and got["version"] == failed.version + 1
    stored = await Job.get(failed.id)
    assert stored.state == JobState.PENDING and stored.version == failed.version + 1
    assert stored.next_try_ms == int(stored.next_try_at.timestamp() * 1000) and stored.sync_ms > failed.sync_ms
    assert "asked" in stored.history[-1].reason and any("retried" in w for w in api.wakes.reasons)
    # in flight: cancelled only once the live call is over
    status, got = await api.call("acme:operator", "POST", f"/jobs/{in_flight.id}/cancel", json={"reason": "stop"})
    assert status == 202 and got["status"] == "deferred"
    assert (await Job.get(in_flight.id)).state == JobState.IN_FLIGHT
    raw = await Job.get_pymongo_collection().find_one({"_id": in_flight.id})
    raw.update(state="retry_scheduled", version=raw["version"] + 1)  # the call actor's checkpoint after the call
    await Job.get_pymongo_collection().replace_one({"_id": in_flight.id}, raw)
    assert await api.api.routes.apply_deferred_cancels() == 1  # what serve_forever runs every few seconds
    assert (await Job.get(in_flight.id)).state == JobState.CANCELLED
    assert (await api.call("acme:operator", "POST", f"/jobs/{in_flight.id}/cancel", json={}))[0] == 409


async def test_routes_of_other_modules_declare_access_or_are_admin_only(api: Api) -> None:
    assert (await api.call("acme:viewer", "GET", "/extra/acme/thing")) == (200, {"account": "acme"})
    status, got = await api.call("beta:viewer", "GET", "/extra/acme/thing")
    assert status == 404 and got["detail"] == "no account 'acme'"  # checked before the handler ran
    assert (await api.call("acme:billing", "GET", "/extra/acme/thing"))[0] == 403
    for who in ("acme:operator", "acme:viewer", "acme:billing"):
        assert (await api.call(who, "POST", "/extra/undeclared"))[0] == 403
    for who in ("acme:viewer", "acme:billing"):
        assert (await api.call(who, "POST", "/batches/upload"))[0] == 403  # the upload is for operators
    # an operator reaches the upload (here: a body that is not a form), and uploads into its own account only
    assert (await api.call("acme:operator", "POST", "/batches/upload", data=b"x",
                           headers={"Content-Type": "text/plain"}))[0] == 400
    form = aiohttp.FormData()
    form.add_field("account", "acme")
    form.add_field("batch_id", "sneaky")
    form.add_field("file", b"nombre,telefono\nAna,+56987654321\n", filename="people.csv")
    status, got = await api.call("beta:operator", "POST", "/batches/upload", data=form)
    assert status == 404 and got["detail"] == "no account 'acme'"
    assert await Batch.get("sneaky") is None
    assert (await api.call("admin", "POST", "/extra/undeclared")) == (200, {"ok": True})
    [entry] = await AuditEntry.find({"action": "POST /extra/undeclared"}).to_list()
    assert entry.key_id == "control-token" and entry.status == 200
    # an extra route's {"error": ...} answer is reshaped as problem details, its other keys kept
    status, got = await api.call("admin", "POST", "/batches/upload", data=b"x",
                                 headers={"Content-Type": "text/plain"})
    assert status == 400 and got["detail"] == got["error"] and got["type"].endswith("/bad-request")


async def test_a_multipart_part_header_aiohttp_cannot_parse_is_400(api: Api) -> None:
    """Found by schemathesis: the upload's multipart reader raised past the route's own checks."""
    body = (b'--xx\r\nContent-Disposition: form-data; name="\xb8rC\x14JA"\r\n\r\n{}\r\n--xx--\r\n')
    status, got = await api.call("admin", "POST", "/batches/upload", data=body,
                                 headers={"Content-Type": "multipart/form-data; boundary=xx"})
    assert status == 400 and got["detail"].startswith("malformed request body"), got
