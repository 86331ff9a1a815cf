"""Control-API routes of the integrations (docs/integrations.md): webhook subscriptions, their deliveries
(list, replay), the outbox's events, and the CRM's contacts and opportunities.

Every route is scoped like the rest of the API: a key of one account sees only its own (404 otherwise)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import DuplicateKeyError

from speechai.api import schemas as s
from speechai.api.audit import note
from speechai.api.auth import account_scope, ensure_account, principal, register_account_resolver, requires
from speechai.api.openapi import documented
from speechai.api.problems import ApiError, invalid
from speechai.api.routes import cursor_key, page, parse_query, path_id
from speechai.domain.events import EVENT_TYPES
from speechai.integrations.crm import ensure_subscription
from speechai.integrations.delivery import replay
from speechai.integrations.outbox import Outbox
from speechai.integrations.ssrf import TargetRefused, check_url
from speechai.integrations.subscriptions import check_events, subscribe
from speechai.loader.normalize import parse_phone, parse_rut
from speechai.runtime.webhooks import JsonBodyError, parse_json, read_body
from speechai.store.models import Account
from speechai.store.outbox_models import (
    Contact,
    Delivery,
    Opportunity,
    OutboxEvent,
    Subscription,
    contact_id,
)

OPERATOR, VIEWER = s.Role.OPERATOR, s.Role.VIEWER
DELIVERY_STATES = ("pending", "delivered", "failed", "disabled")
OPPORTUNITY_STATUSES = ("pending", "assigned", "contacted", "won", "lost", "closed")
JSON_MAX_BYTES = 64 * 1024
EventName = Annotated[str, Field(min_length=1, max_length=40)]


class SubscriptionCreate(s.Strict):
    account_id: s.Id
    url: str = Field(min_length=1, max_length=2048)
    events: list[EventName] = Field(min_length=1, max_length=len(EVENT_TYPES) + 1)
    description: str = Field("", max_length=500)


class SubscriptionChange(s.Strict):
    url: str | None = Field(None, min_length=1, max_length=2048)
    events: list[EventName] | None = Field(None, min_length=1, max_length=len(EVENT_TYPES) + 1)
    description: str | None = Field(None, max_length=500)
    active: bool | None = None


class DeliveryQuery(s.PageQuery):
    subscription_id: s.Id
    state: str | None = Field(None, max_length=20)


class ReplayRequest(s.Strict):
    state: str = Field("failed", max_length=20, description="replay the subscription's deliveries in this state")


class ContactCreate(s.Strict):
    account_id: s.Id
    name: str = Field("", max_length=300)
    national_id: str | None = Field(None, max_length=20)
    phone: str | None = Field(None, max_length=40)


class OpportunityCreate(s.Strict):
    account_id: s.Id
    contact_id: s.Id
    title: str = Field("", max_length=300)
    status: str = Field("pending", max_length=20)


class OpportunityQuery(s.PageQuery):
    contact_id: s.Id


class SubscriptionPath(BaseModel):
    sub_id: s.Id


class DeliveryPath(BaseModel):
    delivery_id: s.Id


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")  # a stored document: fields added later stay visible


class SubscriptionOut(_Out):
    id: str
    account_id: str
    url: str
    events: list[str]
    description: str = ""
    active: bool = True
    disabled_reason: str | None = None
    created_ms: int
    last_success_ms: int = 0
    failures_in_row: int = 0


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="the signing secret: shown only in this answer")


class SubscriptionPage(BaseModel):
    items: list[SubscriptionOut]
    next_cursor: str | None


class DeliveryOut(_Out):
    id: str
    event_id: str
    subscription_id: str
    account_id: str
    type: str
    state: str
    next_ms: int
    tries: int = 0
    attempts: list[dict[str, Any]] = Field(default_factory=list, description="the latest tries: status, "
                                                                             "latency, error")
    created_ms: int


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class Replayed(BaseModel):
    replayed: int = Field(description="deliveries queued again")


class EventOut(_Out):
    id: str
    account_id: str
    type: str
    at_ms: int
    data: dict[str, Any] = Field(default_factory=dict)


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class ContactOut(_Out):
    id: str
    account_id: str
    key: str = Field(description="the RUT, else the phone (E.164): how jobs key people")
    name: str = ""
    national_id: str | None = None
    phone: str | None = None
    created_ms: int


class OpportunityOut(_Out):
    id: str
    account_id: str
    contact_id: str
    title: str = ""
    status: str
    first_call_completed: bool = False
    first_call_attempts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    created_ms: int


class OpportunityPage(BaseModel):
    items: list[OpportunityOut]
    next_cursor: str | None


def _events(names: list[str]) -> list[str]:
    try:
        return check_events(names)
    except ValueError as exc:
        raise ApiError(422, f"events: {exc}") from None


def _public(sub: dict[str, Any], *, secret: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in sub.items() if k != "secret"}
    out["id"] = out.pop("_id")
    if secret:
        out["secret"] = sub["secret"]
    return out


def _doc(raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    out["id"] = str(out.pop("_id"))
    return out


def _answer(model: type[BaseModel], data: Any, status: int = 200) -> web.Response:
    """``data`` shaped by ``model``, the schema the document shows."""
    return web.json_response(model.model_validate(data).model_dump(mode="json"), status=status)


async def _page(model: Any, query: dict[str, Any], q: s.PageQuery, shape: Any, out: type[BaseModel],
                projection: dict[str, int] | None = None) -> web.Response:
    """One page of ``model``'s documents matching ``query``, by ``_id`` after the cursor."""
    if (after := cursor_key(q.cursor)) is not None:
        query = {**query, "_id": {"$gt": after}}
    rows = await model.get_pymongo_collection().find(query, projection).sort("_id", 1).limit(q.limit + 1).to_list()
    rows, nxt = page(rows, q.limit, lambda r: r["_id"])
    return _answer(out, {"items": [shape(r) for r in rows], "next_cursor": nxt})


def integration_routes(*, clock: Any, outbox: Outbox, allow_private_targets: bool) -> list[web.RouteDef]:
    def now_ms() -> int:
        return int(clock.now().timestamp() * 1000)

    async def body(request: web.Request, model: Any) -> Any:
        try:
            value = parse_json(await read_body(request, JSON_MAX_BYTES), int64=False)
        except JsonBodyError as exc:
            raise ApiError(400, str(exc)) from None
        if not isinstance(value, dict):
            raise ApiError(400, "body must be a JSON object")
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise invalid(exc) from None

    async def own_subscription(request: web.Request) -> dict[str, Any]:
        sid = path_id(request, "sub_id")
        raw = await Subscription.get_pymongo_collection().find_one({"_id": sid})
        if raw is None or not principal(request).sees(raw.get("account_id")):
            raise ApiError(404, f"no subscription {sid!r}")
        return raw

    @documented(tag="integrations", query=s.AccountPageQuery, ok=SubscriptionPage)
    @requires(OPERATOR, VIEWER, account_from="handler")
    async def list_subscriptions(request: web.Request) -> web.Response:
        """Page of webhook subscriptions (secrets never shown)."""
        q = parse_query(request, s.AccountPageQuery)
        query: dict[str, Any] = {}
        if (scope := q.account_id or account_scope(request)) is not None:
            ensure_account(request, scope, f"no account {scope!r}")
            query["account_id"] = scope
        return await _page(Subscription, query, q, _public, SubscriptionPage)

    @documented(tag="integrations", body=SubscriptionCreate, ok=SubscriptionCreated, ok_status=201)
    @requires(OPERATOR, account_from="handler")
    async def create_subscription(request: web.Request) -> web.Response:
        """Subscribe a URL to events; the signing secret is shown once, in this answer."""
        req = await body(request, SubscriptionCreate)
        ensure_account(request, req.account_id, f"no account {req.account_id!r}")
        if await Account.get(req.account_id) is None:
            raise ApiError(404, f"no account {req.account_id!r}")
        _events(req.events)
        try:
            sub = await subscribe(req.account_id, req.url, req.events, description=req.description,
                                  allow_private=allow_private_targets, now_ms=now_ms())
        except TargetRefused as exc:
            raise ApiError(422, f"url: {exc}") from None
        url = sub.url
        outbox.forget_subscriptions(req.account_id)
        note(request, "webhook.subscribe", req.account_id, sub.id, after={"url": url, "events": sub.events})
        return _answer(SubscriptionCreated,
                       _public(sub.model_dump(by_alias=True, exclude={"revision_id"}), secret=True), 201)

    @documented(tag="integrations", path=SubscriptionPath, ok=SubscriptionOut)
    @requires(OPERATOR, VIEWER, account_from="handler")
    async def get_subscription(request: web.Request) -> web.Response:
        """One subscription: state, failures in a row, why it was disabled."""
        return _answer(SubscriptionOut, _public(await own_subscription(request)))

    @documented(tag="integrations", path=SubscriptionPath, body=SubscriptionChange, ok=SubscriptionOut)
    @requires(OPERATOR, account_from="handler")
    async def change_subscription(request: web.Request) -> web.Response:
        """Change url/events/description, or enable (clears its failure run) / disable it."""
        raw = await own_subscription(request)
        req = await body(request, SubscriptionChange)
        change: dict[str, Any] = {}
        if req.url is not None:
            try:
                change["url"] = check_url(req.url, allow_private=allow_private_targets)
            except TargetRefused as exc:
                raise ApiError(422, f"url: {exc}") from None
        if req.events is not None:
            change["events"] = _events(req.events)
        if req.description is not None:
            change["description"] = req.description
        if req.active is True:
            change.update(active=True, disabled_reason=None, failures_in_row=0)
        elif req.active is False:
            change.update(active=False, disabled_reason=f"disabled by {principal(request).key_id}")
        if change:
            await Subscription.get_pymongo_collection().update_one({"_id": raw["_id"]}, {"$set": change})
            outbox.forget_subscriptions(raw["account_id"])
        note(request, "webhook.change", raw["account_id"], raw["_id"],
             before={k: raw.get(k) for k in change}, after=change)
        return _answer(SubscriptionOut, _public({**raw, **change}))

    @documented(tag="integrations", path=SubscriptionPath, ok=SubscriptionOut)
    @requires(OPERATOR, account_from="handler")
    async def delete_subscription(request: web.Request) -> web.Response:
        """Remove a subscription; its pending deliveries stop."""
        raw = await own_subscription(request)
        await Subscription.get_pymongo_collection().delete_one({"_id": raw["_id"]})
        await Delivery.get_pymongo_collection().update_many({"subscription_id": raw["_id"], "state": "pending"},
                                                            {"$set": {"state": "disabled", "next_ms": 0}})
        outbox.forget_subscriptions(raw["account_id"])
        note(request, "webhook.delete", raw["account_id"], raw["_id"], before={"url": raw["url"]})
        return _answer(SubscriptionOut, _public(raw))

    @documented(tag="integrations", query=DeliveryQuery, ok=DeliveryPage)
    @requires(OPERATOR, VIEWER, account_from="handler")
    async def list_deliveries(request: web.Request) -> web.Response:
        """Page of a subscription's deliveries with every try's status, latency and error."""
        q = parse_query(request, DeliveryQuery)
        raw = await Subscription.get_pymongo_collection().find_one({"_id": q.subscription_id})
        if raw is None or not principal(request).sees(raw.get("account_id")):
            raise ApiError(404, f"no subscription {q.subscription_id!r}")
        query: dict[str, Any] = {"subscription_id": q.subscription_id}
        if q.state is not None:
            if q.state not in DELIVERY_STATES:
                raise ApiError(422, f"state {q.state[:20]!r} is not one of {', '.join(DELIVERY_STATES)}")
            query["state"] = q.state
        return await _page(Delivery, query, q, _doc, DeliveryPage, {"claim": 0, "claim_until_ms": 0, "claim_owner": 0})

    @documented(tag="integrations", path=DeliveryPath, ok=Replayed)
    @requires(OPERATOR, account_from="handler")
    async def replay_delivery(request: web.Request) -> web.Response:
        """Send one delivery again (any state); earlier tries stay on record."""
        did = path_id(request, "delivery_id")
        raw = await Delivery.get_pymongo_collection().find_one({"_id": did}, {"account_id": 1})
        if raw is None or not principal(request).sees(raw.get("account_id")):
            raise ApiError(404, f"no delivery {did!r}")
        n = await replay({"_id": did}, now_ms())
        note(request, "webhook.replay", raw["account_id"], did)
        if outbox.on_new is not None:
            outbox.on_new()
        return _answer(Replayed, {"replayed": n})

    @documented(tag="integrations", path=SubscriptionPath, body=ReplayRequest, ok=Replayed, errors=(409,))
    @requires(OPERATOR, account_from="handler")
    async def replay_subscription(request: web.Request) -> web.Response:
        """Send again every delivery of a subscription in a state (default: failed)."""
        raw = await own_subscription(request)
        req = await body(request, ReplayRequest)
        if req.state not in DELIVERY_STATES or req.state == "pending":
            raise ApiError(422, f"state {req.state[:20]!r} is not one of delivered, failed, disabled")
        if not raw.get("active", True):
            raise ApiError(409, "the subscription is disabled: enable it first (PATCH active=true)")
        n = await replay({"subscription_id": raw["_id"], "state": req.state}, now_ms())
        note(request, "webhook.replay", raw["account_id"], raw["_id"], state=req.state, replayed=n)
        if outbox.on_new is not None:
            outbox.on_new()
        return _answer(Replayed, {"replayed": n})

    @documented(tag="integrations", query=s.AccountPageQuery, ok=EventPage)
    @requires(OPERATOR, VIEWER, account_from="handler")
    async def list_events(request: web.Request) -> web.Response:
        """Page of an account's outbox events (what was or will be delivered)."""
        q = parse_query(request, s.AccountPageQuery)
        scope = q.account_id or account_scope(request)
        if scope is None:
            raise ApiError(422, "account_id is required with an admin key")
        ensure_account(request, scope, f"no account {scope!r}")
        query: dict[str, Any] = {"account_id": scope}
        return await _page(OutboxEvent, query, q, _doc, EventPage)

    @documented(tag="integrations", body=ContactCreate, ok=ContactOut, ok_status=201,
                more={200: ("The contact existed already (unchanged)", ContactOut)})
    @requires(OPERATOR, account_from="handler")
    async def create_contact(request: web.Request) -> web.Response:
        """A CRM contact, keyed as jobs key people: the RUT, else the phone (E.164)."""
        req = await body(request, ContactCreate)
        ensure_account(request, req.account_id, f"no account {req.account_id!r}")
        rut = phone = None
        try:
            rut = parse_rut(req.national_id) if req.national_id else None
            phone = parse_phone(req.phone, "CL").number if req.phone else None
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        key = rut or phone
        if key is None:
            raise ApiError(422, "a contact needs national_id (RUT) or phone")
        cid = contact_id(req.account_id, key)
        doc = {"_id": cid, "account_id": req.account_id, "key": key, "name": req.name, "national_id": rut,
               "phone": phone, "created_ms": now_ms()}
        coll = Contact.get_pymongo_collection()
        existed = await coll.find_one({"_id": cid})
        if existed is None:
            try:
                await coll.insert_one(doc)
            except DuplicateKeyError:  # created by a concurrent request
                existed = await coll.find_one({"_id": cid})
        await ensure_subscription(req.account_id, now_ms())
        outbox.forget_subscriptions(req.account_id)
        note(request, "crm.contact", req.account_id, cid)
        return _answer(ContactOut, _doc(existed or doc), 200 if existed else 201)

    @documented(tag="integrations", body=OpportunityCreate, ok=OpportunityOut, ok_status=201)
    @requires(OPERATOR, account_from="handler")
    async def create_opportunity(request: web.Request) -> web.Response:
        """An opportunity of a contact (its outbound calls become its first-call attempts)."""
        req = await body(request, OpportunityCreate)
        ensure_account(request, req.account_id, f"no account {req.account_id!r}")
        contact = await Contact.get(req.contact_id)
        if contact is None or contact.account_id != req.account_id:
            raise ApiError(404, f"no contact {req.contact_id!r}")
        if req.status not in OPPORTUNITY_STATUSES:
            raise ApiError(422, f"status {req.status[:20]!r} is not one of {', '.join(OPPORTUNITY_STATUSES)}")
        opp = Opportunity(id=f"opp_{secrets.token_hex(8)}", account_id=req.account_id, contact_id=req.contact_id,
                          title=req.title, status=req.status, created_ms=now_ms())
        await opp.insert()
        note(request, "crm.opportunity", req.account_id, opp.id)
        return _answer(OpportunityOut, _doc(opp.model_dump(by_alias=True, exclude={"revision_id"})), 201)

    @documented(tag="integrations", query=OpportunityQuery, ok=OpportunityPage)
    @requires(OPERATOR, VIEWER, account_from="handler")
    async def list_opportunities(request: web.Request) -> web.Response:
        """A contact's opportunities with their first-call attempts."""
        q = parse_query(request, OpportunityQuery)
        contact = await Contact.get(q.contact_id)
        if contact is None or not principal(request).sees(contact.account_id):
            raise ApiError(404, f"no contact {q.contact_id!r}")
        rows = await Opportunity.get_pymongo_collection().find({"contact_id": q.contact_id}).to_list()
        rows.sort(key=lambda r: r["_id"])
        if (after := cursor_key(q.cursor)) is not None:
            rows = [r for r in rows if r["_id"] > after]
        rows, nxt = page(rows[:q.limit + 1], q.limit, lambda r: r["_id"])
        return _answer(OpportunityPage, {"items": [_doc(r) for r in rows], "next_cursor": nxt})

    return [
        web.get("/webhooks/subscriptions", list_subscriptions),
        web.post("/webhooks/subscriptions", create_subscription),
        web.get("/webhooks/subscriptions/{sub_id}", get_subscription),
        web.patch("/webhooks/subscriptions/{sub_id}", change_subscription),
        web.delete("/webhooks/subscriptions/{sub_id}", delete_subscription),
        web.post("/webhooks/subscriptions/{sub_id}/replay", replay_subscription),
        web.get("/webhooks/deliveries", list_deliveries),
        web.post("/webhooks/deliveries/{delivery_id}/replay", replay_delivery),
        web.get("/outbox/events", list_events),
        web.post("/crm/contacts", create_contact),
        web.post("/crm/opportunities", create_opportunity),
        web.get("/crm/opportunities", list_opportunities),
    ]


async def _subscription_account(sub_id: str) -> str | None:
    row = await Subscription.get_pymongo_collection().find_one({"_id": sub_id}, {"account_id": 1})
    return None if row is None else row.get("account_id")


async def _delivery_account(delivery_id: str) -> str | None:
    row = await Delivery.get_pymongo_collection().find_one({"_id": delivery_id}, {"account_id": 1})
    return None if row is None else row.get("account_id")


# A key refused by its role still gets 404 for another account's subscription or delivery (speechai.api.auth).
register_account_resolver("sub_id", "subscription", _subscription_account)
register_account_resolver("delivery_id", "delivery", _delivery_account)
