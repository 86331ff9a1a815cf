"""Documents of the integrations: the outbox (events), webhook subscriptions and their deliveries, and the
CRM's contacts and opportunities. Times are epoch-ms integers (indexable ranges, never a $set datetime)."""

from __future__ import annotations

from typing import Any

import pymongo
from beanie import Document
from pydantic import BaseModel, Field
from pymongo import IndexModel

# The built-in subscriber that records calls as opportunity attempts (docs/integrations.md).
CRM_SUBSCRIPTION = "crm"


class OutboxEvent(Document):
    """One event, relayed from the document that recorded it with its cause; ``id`` derives from the cause."""

    id: str  # type: ignore[assignment]
    account_id: str
    type: str
    at_ms: int
    data: dict[str, Any] = Field(default_factory=dict)
    relayed_ms: int = 0

    class Settings:
        name = "outbox"
        indexes = [IndexModel([("account_id", pymongo.ASCENDING)])]  # GET /events: an account's events


class Subscription(Document):
    """An account's webhook endpoint. ``secret`` is the Standard Webhooks ``whsec_…`` signing secret."""

    id: str  # type: ignore[assignment]
    account_id: str
    url: str
    events: list[str]
    secret: str
    description: str = ""
    active: bool = True
    disabled_reason: str | None = None
    created_ms: int
    last_success_ms: int = 0
    failures_in_row: int = 0

    class Settings:
        name = "webhook_subscriptions"
        indexes = [IndexModel([("account_id", pymongo.ASCENDING)])]  # fan-out: an account's subscriptions


class DeliveryTry(BaseModel):
    at_ms: int  # business time of the try
    status: int | None = None  # HTTP status, None when no answer came
    latency_ms: int | None = None
    error: str | None = None


class Delivery(Document):
    """One event to one subscription. ``next_ms`` > 0 while it is due to be tried (an integer range the
    embedded server answers from an index); 0 once delivered, given up or disabled."""

    id: str  # type: ignore[assignment]  "<event id>><subscription id>"
    event_id: str
    subscription_id: str
    account_id: str
    type: str
    state: str = "pending"  # pending | delivered | failed | disabled
    next_ms: int
    first_try_ms: int = 0
    tries: int = 0
    attempts: list[DeliveryTry] = Field(default_factory=list)  # the latest MAX_TRIES_KEPT
    delivered_ms: int = 0
    claim: str = ""
    claim_until_ms: int = 0
    claim_owner: str = ""  # instance id: a restarted instance frees its own claims at once
    created_ms: int

    class Settings:
        name = "webhook_deliveries"
        indexes = [
            IndexModel([("next_ms", pymongo.ASCENDING)]),  # delivery actor: due deliveries
            IndexModel([("subscription_id", pymongo.ASCENDING)]),  # listing and replay per subscription
            IndexModel([("event_id", pymongo.ASCENDING)]),
            IndexModel([("claim_owner", pymongo.ASCENDING)]),  # a restarted instance's own claims
        ]


class Contact(Document):
    """``id`` is "<account>:<person key>" (the RUT, else the E.164 phone, as jobs key people)."""

    id: str  # type: ignore[assignment]
    account_id: str
    key: str
    name: str = ""
    national_id: str | None = None
    phone: str | None = None
    created_ms: int

    class Settings:
        name = "crm_contacts"
        indexes = [IndexModel([("account_id", pymongo.ASCENDING)])]


class Opportunity(Document):
    id: str  # type: ignore[assignment]
    account_id: str
    contact_id: str
    title: str = ""
    status: str = "pending"  # pending | assigned | contacted | won | lost | closed
    first_call_completed: bool = False
    first_call_successful_attempt: int | None = None
    # "1".."5" -> {status: green|orange|red, call_id, attempted_at_ms, notes}
    first_call_attempts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    last_contact_attempt_ms: int = 0
    created_ms: int
    version: int = 0

    class Settings:
        name = "crm_opportunities"
        indexes = [IndexModel([("contact_id", pymongo.ASCENDING)])]  # a contact's opportunities


def contact_id(account_id: str, key: str) -> str:
    return f"{account_id}:{key}"


INTEGRATION_MODELS: list[type[Document]] = [OutboxEvent, Subscription, Delivery, Contact, Opportunity]
