"""The delivery actor against the embedded server and a real receiver over HTTP: Standard Webhooks
signatures (checked by the package's own verifier), retries with back-off, giving up, disabling a
subscription after sustained failure, replay, and the SSRF guard at connection time."""

from __future__ import annotations

import random

import pytest

from speechai.domain.delivery_policy import RetryRules
from speechai.domain.events import OutboxItem
from speechai.integrations.delivery import Deliverer, DeliverySettings, replay
from speechai.integrations.outbox import Outbox
from speechai.integrations.ssrf import PublicOnlyResolver
from speechai.store.outbox_models import Delivery, OutboxEvent, Subscription
from tests.integrations.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HOUR_MS = 3600 * 1000


class Clock:
    def __init__(self) -> None:
        self.ms = 1_767_000_000_000

    def __call__(self) -> int:
        return self.ms


async def subscribe(url: str, events=("call.finished",), sub_id: str = "sub_1") -> Subscription:
    sub = Subscription(id=sub_id, account_id="acme", url=url, events=list(events), secret=SECRET, created_ms=0)
    await sub.insert()
    return sub


def item(n: int, kind: str = "call.finished") -> OutboxItem:
    return OutboxItem(id=f"att{n}:{kind}", type=kind, at_ms=1_767_000_000_000 + n, account_id="acme",
                      data={"job_id": f"j{n}", "attempt": {"call_id": f"call_{n}"}})


def deliverer(clock: Clock, **rules) -> Deliverer:
    return Deliverer(clock, DeliverySettings(allow_private_targets=True, timeout_s=5,
                                             rules=RetryRules(**rules)), rng=random.Random(3))


async def run_step(d: Deliverer) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        d._http = http
        return await d.step()


async def test_signed_delivery_verified_by_the_package(db) -> None:
    clock = Clock()
    async with Receiver(secret=SECRET) as rx:
        await subscribe(rx.url, events=("call.finished", "job.done"))
        outbox = Outbox(clock)
        await outbox.relay([item(1), item(2, "job.done"), item(3, "promise_to_pay")])  # the last: not subscribed
        # an event no subscription wants costs no write: it stays only on the document of its cause
        assert sorted(e.id for e in await OutboxEvent.find_all().to_list()) == ["att1:call.finished", "att2:job.done"]
        assert await Delivery.find_all().count() == 2
        d = deliverer(clock)
        assert await run_step(d) == 2
    assert sorted(r.msg_id for r in rx.got) == ["att1:call.finished", "att2:job.done"]
    assert all(r.verified for r in rx.got)
    assert rx.got[0].body["data"]["attempt"]["call_id"] in ("call_1", "call_2")
    for dl in await Delivery.find_all().to_list():
        assert dl.state == "delivered" and dl.next_ms == 0 and dl.tries == 1
        assert dl.attempts[0].status == 200 and dl.attempts[0].latency_ms is not None
    assert (await Subscription.get("sub_1")).last_success_ms == clock.ms


async def test_relay_twice_is_one_event_and_one_delivery(db) -> None:
    clock = Clock()
    await subscribe("http://127.0.0.1:9/x")
    await Outbox(clock).relay([item(1)])
    await Outbox(clock).relay([item(1)])  # another process, after a crash: nothing new
    assert await OutboxEvent.find_all().count() == 1 and await Delivery.find_all().count() == 1


async def test_retries_with_back_off_until_the_receiver_recovers(db) -> None:
    clock = Clock()
    async with Receiver(secret=SECRET, fail_first=3) as rx:
        await subscribe(rx.url)
        await Outbox(clock).relay([item(1)])
        d = deliverer(clock)
        waits = []
        for _ in range(4):
            assert await run_step(d) == 1
            dl = await Delivery.get(f"{item(1).id}>sub_1")
            if dl.state == "delivered":
                break
            assert await run_step(d) == 0  # not due before its back-off
            waits.append(dl.next_ms - clock.ms)
            clock.ms = dl.next_ms
    assert [r.status for r in rx.got] == [500, 500, 500, 200]
    assert len({r.msg_id for r in rx.got}) == 1  # the same webhook-id on every try
    assert waits[0] < waits[1] < waits[2] and 4_000 <= waits[0] <= 6_000
    assert [t.status for t in dl.attempts] == [500, 500, 500, 200] and dl.tries == 4
    assert (await Subscription.get("sub_1")).failures_in_row == 0


async def test_gives_up_after_a_day_and_disables_the_subscription(db) -> None:
    clock = Clock()
    async with Receiver(secret=SECRET, fail_first=10**6, fail_status=503) as rx:
        await subscribe(rx.url)
        outbox = Outbox(clock)
        await outbox.relay([item(n) for n in range(3)])
        d = deliverer(clock, retry_for_s=26 * 3600, disable_after_failures=20, disable_after_s=24 * 3600)
        for _ in range(40):
            await run_step(d)
            due = [x.next_ms for x in await Delivery.find({"next_ms": {"$gt": 0}}).to_list()]
            if not due:
                break
            clock.ms = max(min(due), clock.ms + 1)
            if clock.ms - 1_767_000_000_000 > 3 * 24 * HOUR_MS:
                break
    sub = await Subscription.get("sub_1")
    assert not sub.active and "failed deliveries in a row" in sub.disabled_reason
    states = {x.state for x in await Delivery.find_all().to_list()}
    assert states <= {"failed", "disabled"} and states
    assert all(r.status == 503 for r in rx.got)
    # after 24 h of failures at the latest, it was disabled; nothing is sent to a disabled subscription
    sent = len(rx.got)
    await outbox.relay([item(99)])
    await run_step(d)
    assert len(rx.got) == sent


async def test_replay_sends_a_delivered_event_again(db) -> None:
    clock = Clock()
    async with Receiver(secret=SECRET) as rx:
        await subscribe(rx.url)
        await Outbox(clock).relay([item(1)])
        d = deliverer(clock)
        await run_step(d)
        assert await replay({"_id": f"{item(1).id}>sub_1"}, clock.ms) == 1
        await run_step(d)
    assert [r.msg_id for r in rx.got] == [item(1).id] * 2 and all(r.verified for r in rx.got)
    dl = await Delivery.get(f"{item(1).id}>sub_1")
    assert dl.state == "delivered" and dl.tries == 2 and len(dl.attempts) == 2


async def test_a_private_target_is_refused_at_send_time(db) -> None:
    clock = Clock()
    async with Receiver(secret=SECRET) as rx:
        await subscribe(rx.url)  # e.g. written when private targets were allowed
        await Outbox(clock).relay([item(1)])
        d = Deliverer(clock, DeliverySettings(allow_private_targets=False), rng=random.Random(1))
        await run_step(d)
    assert rx.got == []
    dl = await Delivery.get(f"{item(1).id}>sub_1")
    assert dl.state == "pending" and "private or loopback" in dl.attempts[0].error


async def test_resolver_refuses_names_of_private_addresses() -> None:
    with pytest.raises(OSError, match="private address"):
        await PublicOnlyResolver().resolve("localhost", 80)


async def test_built_in_subscriber_failure_is_retried(db) -> None:
    clock = Clock()
    calls = []

    async def flaky(event):
        calls.append(event["_id"])
        if len(calls) == 1:
            raise RuntimeError("crm database away")

    await subscribe("internal:crm")
    await Outbox(clock).relay([item(1)])
    d = Deliverer(clock, DeliverySettings(), handlers={"crm": flaky}, rng=random.Random(1))
    await run_step(d)
    dl = await Delivery.get(f"{item(1).id}>sub_1")
    assert dl.state == "pending" and "crm database away" in dl.attempts[0].error
    clock.ms = dl.next_ms
    await run_step(d)
    assert (await Delivery.get(dl.id)).state == "delivered" and calls == [item(1).id] * 2


async def test_the_signature_carries_the_wall_clock_the_receiver_checks(db) -> None:
    from datetime import UTC, datetime, timedelta

    clock = Clock()
    async with Receiver(secret=SECRET) as rx:
        await subscribe(rx.url)
        await Outbox(clock).relay([item(1)])
        stale = Deliverer(clock, DeliverySettings(allow_private_targets=True), rng=random.Random(1),
                          wall_now=lambda: datetime.now(UTC) - timedelta(hours=1))
        await run_step(stale)
    # an hour-old timestamp fails the package's verifier (its tolerance is 5 minutes): refused, retried later
    assert [(r.verified, r.status) for r in rx.got] == [(False, 401)]
    assert (await Delivery.get(f"{item(1).id}>sub_1")).state == "pending"
