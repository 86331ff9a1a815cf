"""The delivery actor: sends due webhook deliveries, signed with the Standard Webhooks scheme, and
records every try (status, latency, error); retries with back-off for about a day; disables a
subscription after sustained failure. It only reads and writes delivery documents: dialing never waits
for it.

Several instances may run it on one database: a delivery is claimed (``claim``, ``claim_until_ms`` in
wall-clock ms) before it is sent, so two instances do not send it at once; a claim that outlives a crash
expires. Receivers must still deduplicate by ``webhook-id`` (the event id): a crash after the receiver
answered and before the result was written sends it again.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anyio
import structlog
from pymongo import ReplaceOne
from pymongo.errors import ConnectionFailure
from standardwebhooks.webhooks import Webhook

from speechai.domain.delivery_policy import RetryRules, gives_up, retry_delay_s, should_disable, succeeded
from speechai.integrations.ssrf import PublicOnlyResolver, TargetRefused, check_url
from speechai.store.models import wall_ms
from speechai.store.outbox_models import Delivery, DeliveryTry, OutboxEvent, Subscription

log = structlog.get_logger("speechai.webhooks")
MAX_TRIES_KEPT = 20
EVENT_WAIT_MS = 2_000
MAX_ANSWER_BYTES = 64 * 1024
INTERNAL = "internal:"  # url scheme of built-in subscribers (the CRM)
Handler = Callable[[dict[str, Any]], Awaitable[object]]


@dataclass
class DeliverySettings:
    allow_private_targets: bool = False
    timeout_s: float = 10.0
    concurrency: int = 16
    batch: int = 100
    # real seconds between looks when nothing wakes it (new deliveries of this instance wake it at once;
    # retries due and other instances' deliveries wait at most this long)
    poll_s: float = 5.0
    claim_s: float = 60.0  # real seconds a claim holds (longer than a try can take)
    rules: RetryRules = field(default_factory=RetryRules)


def body_of(event: dict[str, Any]) -> str:
    at = datetime.fromtimestamp(event["at_ms"] / 1000, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event["type"], "timestamp": at, "data": event.get("data") or {}},
                      separators=(",", ":"), default=str, ensure_ascii=False)


def signed_headers(secret: str, msg_id: str, body: str, wall_now: datetime) -> dict[str, str]:
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(wall_now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, wall_now, body)}


class Deliverer:
    """``now_ms``: business epoch ms (schedules follow the campaign's clock); ``real_seconds`` converts
    business seconds to real ones for sleeping."""

    def __init__(self, now_ms: Callable[[], int], settings: DeliverySettings | None = None, *,
                 handlers: dict[str, Handler] | None = None, rng: random.Random | None = None,
                 owner: str = "", wall_now: Callable[[], datetime] | None = None) -> None:
        self.now_ms = now_ms
        self.owner = owner
        # the signature's timestamp is wall-clock time: receivers check it against their own clock
        self.wall_now = wall_now or (lambda: datetime.now(UTC))
        self.settings = settings or DeliverySettings()
        self.handlers = handlers or {}
        self.rng = rng or random.Random()
        self._wake = anyio.Event()
        self._http: aiohttp.ClientSession | None = None
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        s = self.settings
        connector = aiohttp.TCPConnector(limit=s.concurrency,
                                         resolver=None if s.allow_private_targets else PublicOnlyResolver())
        async with aiohttp.ClientSession(connector=connector) as http:
            self._http = http
            if self.owner:  # what an earlier process of this instance claimed and never finished
                await Delivery.get_pymongo_collection().update_many(
                    {"claim_owner": self.owner}, {"$set": {"claim_owner": "", "claim_until_ms": 0, "claim": ""}})
            while True:
                try:
                    busy = await self.step()
                except ConnectionFailure as exc:
                    log.warning("deliveries_waiting_for_database", error=str(exc))
                    busy = 0
                if busy:
                    continue
                with anyio.move_on_after(s.poll_s):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def step(self) -> int:
        """Send one round of due deliveries; how many were tried."""
        s, coll = self.settings, Delivery.get_pymongo_collection()
        now = self.now_ms()
        due = [d["_id"] async for d in coll.find({"next_ms": {"$gt": 0, "$lte": now}}, {"_id": 1})
               .sort("next_ms", 1).limit(s.batch)]
        if not due:
            return 0
        token, wall = uuid.uuid4().hex, wall_ms()
        await coll.update_many({"_id": {"$in": due}, "claim_until_ms": {"$lt": wall}},
                               {"$set": {"claim": token, "claim_until_ms": wall + int(s.claim_s * 1000),
                                         "claim_owner": self.owner}})
        won = [Delivery.model_validate(d) async for d in coll.find({"_id": {"$in": due}, "claim": token})]
        if not won:
            return 0
        events = {e["_id"]: e async for e in OutboxEvent.get_pymongo_collection().find(
            {"_id": {"$in": list({d.event_id for d in won})}})}
        subs = {x.id: x for x in await Subscription.find({"_id": {"$in": list({d.subscription_id for d in won})}}
                                                         ).to_list()}
        limiter = anyio.Semaphore(s.concurrency)

        async def one(d: Delivery) -> None:
            async with limiter:
                await self._try(d, events.get(d.event_id), subs.get(d.subscription_id))

        async with anyio.create_task_group() as tg:
            for d in won:
                tg.start_soon(one, d)
        await coll.bulk_write([ReplaceOne({"_id": d.id, "claim": token},
                                          d.model_dump(by_alias=True, exclude={"revision_id"})) for d in won],
                              ordered=False)
        await self._account_for(won, subs)
        return len(won)

    async def _try(self, d: Delivery, event: dict[str, Any] | None, sub: Subscription | None) -> None:
        now = self.now_ms()
        d.claim, d.claim_until_ms, d.claim_owner = "", 0, ""
        if sub is None or not sub.active:
            d.state, d.next_ms = ("failed", 0) if sub is None else ("disabled", 0)
            d.attempts.append(DeliveryTry(at_ms=now, error="subscription removed" if sub is None
                                          else "subscription disabled"))
            return
        if event is None:
            # deliveries are written before their event: it is being relayed right now (or again after a
            # crash in between), so look again shortly
            d.next_ms = now + EVENT_WAIT_MS
            return
        d.first_try_ms = d.first_try_ms or now
        d.tries += 1
        started = time.monotonic()
        status, error = await self._send(sub, event)
        latency = int((time.monotonic() - started) * 1000)
        d.attempts = [*d.attempts, DeliveryTry(at_ms=now, status=status, latency_ms=latency, error=error)
                      ][-MAX_TRIES_KEPT:]
        if status is not None and succeeded(status):
            d.state, d.next_ms, d.delivered_ms = "delivered", 0, now
            self.sent += 1
        elif gives_up(d.first_try_ms, now, self.settings.rules):
            d.state, d.next_ms = "failed", 0
            log.error("webhook_delivery_gave_up", delivery=d.id, tries=d.tries, error=error, status=status)
        else:
            d.next_ms = now + int(retry_delay_s(d.tries, self.rng) * 1000)
            log.warning("webhook_delivery_failed", delivery=d.id, tries=d.tries, error=error, status=status)

    async def _send(self, sub: Subscription, event: dict[str, Any]) -> tuple[int | None, str | None]:
        if sub.url.startswith(INTERNAL):
            handler = self.handlers.get(sub.url[len(INTERNAL):])
            if handler is None:
                return None, f"no built-in subscriber {sub.url!r}"
            try:
                await handler(event)
            except Exception as exc:  # a failing subscriber is retried like a failing receiver
                return None, f"{type(exc).__name__}: {exc}"[:500]
            return 200, None
        try:
            check_url(sub.url, allow_private=self.settings.allow_private_targets)
        except TargetRefused as exc:
            return None, str(exc)
        assert self._http is not None
        body = body_of(event)
        headers = signed_headers(sub.secret, event["_id"], body, self.wall_now())
        try:
            with anyio.fail_after(self.settings.timeout_s):
                async with self._http.post(sub.url, data=body.encode(), headers=headers,
                                           allow_redirects=False) as resp:
                    await resp.content.read(MAX_ANSWER_BYTES)
                    return resp.status, None if succeeded(resp.status) else f"HTTP {resp.status}"
        except TimeoutError:
            return None, f"no answer within {self.settings.timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]

    async def _account_for(self, tried: list[Delivery], subs: dict[str, Subscription]) -> None:
        """Per subscription: a success resets its failure run; sustained failure disables it."""
        coll = Subscription.get_pymongo_collection()
        now = self.now_ms()
        for sub_id in {d.subscription_id for d in tried}:
            mine = [d for d in tried if d.subscription_id == sub_id and d.attempts and d.attempts[-1].at_ms >= 0]
            ok = any(d.state == "delivered" for d in mine)
            failed = sum(1 for d in mine if d.state != "delivered" and d.tries)
            if ok:
                await coll.update_one({"_id": sub_id}, {"$set": {"last_success_ms": now, "failures_in_row": 0}})
                continue
            if not failed:
                continue
            raw = await coll.find_one_and_update({"_id": sub_id}, {"$inc": {"failures_in_row": failed}},
                                                 return_document=True)
            if raw is None or not raw.get("active", True):
                continue
            if should_disable(raw["failures_in_row"], raw.get("last_success_ms", 0), raw.get("created_ms", 0), now,
                              self.settings.rules):
                await disable(sub_id, f"disabled after {raw['failures_in_row']} failed deliveries in a row and "
                                      f"none delivered for {self.settings.rules.disable_after_s / 3600:g} h; last: "
                                      f"{mine[-1].attempts[-1].error}")


async def disable(sub_id: str, reason: str) -> int:
    """Disable a subscription; its pending deliveries stop (replayable once it is enabled again)."""
    await Subscription.get_pymongo_collection().update_one(
        {"_id": sub_id}, {"$set": {"active": False, "disabled_reason": reason}})
    stopped = await Delivery.get_pymongo_collection().update_many(
        {"subscription_id": sub_id, "state": "pending"}, {"$set": {"state": "disabled", "next_ms": 0}})
    log.error("webhook_subscription_disabled", subscription=sub_id, reason=reason,
              pending_stopped=stopped.modified_count)
    return stopped.modified_count


async def replay(query: dict[str, Any], now_ms: int) -> int:
    """Send matching deliveries again (whatever their state); the tries so far stay on record."""
    result = await Delivery.get_pymongo_collection().update_many(
        query, {"$set": {"state": "pending", "next_ms": now_ms, "first_try_ms": 0, "claim": "",
                         "claim_until_ms": 0}})
    return result.modified_count
