"""Making and checking webhook subscriptions (shared by the control API and ``speechai webhooks``)."""

from __future__ import annotations

import base64
import secrets

from speechai.domain.events import EVENT_TYPES
from speechai.integrations.ssrf import check_url
from speechai.store.outbox_models import Subscription


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_events(names: list[str]) -> list[str]:
    """The event types, sorted and unique; ValueError naming the unknown ones."""
    bad = [n for n in names if n != "*" and n not in EVENT_TYPES]
    if bad:
        raise ValueError(f"unknown event type(s) {', '.join(repr(b[:40]) for b in bad)}; known: "
                         f"{', '.join(EVENT_TYPES)} or '*'")
    return sorted(set(names))


async def subscribe(account_id: str, url: str, events: list[str], *, description: str = "",
                    allow_private: bool, now_ms: int) -> Subscription:
    """A new active subscription; ValueError (TargetRefused included) naming what is wrong."""
    sub = Subscription(id=f"sub_{secrets.token_hex(8)}", account_id=account_id,
                       url=check_url(url, allow_private=allow_private), events=check_events(events),
                       secret=new_secret(), description=description, created_ms=now_ms)
    await sub.insert()
    return sub
