"""The webhook subscription routes: SSRF refusal, account scoping (404 for another account's
subscription), roles, and the audit trail."""

from __future__ import annotations

from speechai.store.api_models import AuditEntry
from tests.api.conftest import Api


async def test_subscription_routes_scope_ssrf_and_audit(api: Api) -> None:
    status, got = await api.call("acme:operator", "POST", "/webhooks/subscriptions",
                                 json={"account_id": "acme", "url": "http://169.254.169.254/latest", "events": ["*"]})
    assert status == 422 and "private or loopback" in got["detail"]
    status, got = await api.call("acme:operator", "POST", "/webhooks/subscriptions",
                                 json={"account_id": "beta", "url": "https://x.example.com/", "events": ["*"]})
    assert status == 404
    status, sub = await api.call("acme:operator", "POST", "/webhooks/subscriptions",
                                 json={"account_id": "acme", "url": "https://x.example.com/", "events": ["job.done"]})
    assert status == 201 and sub["secret"].startswith("whsec_")
    assert (await api.call("beta:operator", "GET", f"/webhooks/subscriptions/{sub['id']}"))[0] == 404
    status, got = await api.call("acme:viewer", "GET", f"/webhooks/subscriptions/{sub['id']}")
    assert status == 200 and "secret" not in got
    assert (await api.call("acme:viewer", "PATCH", f"/webhooks/subscriptions/{sub['id']}",
                           json={"active": False}))[0] == 403
    status, got = await api.call("acme:operator", "PATCH", f"/webhooks/subscriptions/{sub['id']}",
                                 json={"active": False})
    assert status == 200 and got["active"] is False
    audit = [e.action async for e in AuditEntry.find({"account_id": "acme"})]
    assert "webhook.subscribe" in audit and "webhook.change" in audit


async def test_outbox_events_are_listed_per_account(api: Api) -> None:
    from speechai.domain.events import OutboxItem
    from speechai.integrations.outbox import Outbox
    from speechai.store.outbox_models import Subscription

    for acct in ("acme", "beta"):
        await Subscription(id=f"sub_{acct}", account_id=acct, url="https://x.example.com/", events=["*"],
                           secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", created_ms=0).insert()
    await Outbox(lambda: 5).relay([OutboxItem(id=f"a{i}:job.done", type="job.done", at_ms=i, account_id=acct)
                                   for i, acct in enumerate(["acme", "acme", "acme", "beta"])])
    status, page1 = await api.call("acme:viewer", "GET", "/outbox/events", params={"limit": "2"})
    assert status == 200 and [e["id"] for e in page1["items"]] == ["a0:job.done", "a1:job.done"]
    status, page2 = await api.call("acme:viewer", "GET", "/outbox/events", params={"cursor": page1["next_cursor"]})
    assert [e["id"] for e in page2["items"]] == ["a2:job.done"] and page2["next_cursor"] is None
    assert (await api.call("acme:viewer", "GET", "/outbox/events", params={"account_id": "beta"}))[0] == 404
    assert (await api.call("admin", "GET", "/outbox/events"))[0] == 422  # an admin names the account
