"""A tap on the structlog event stream: metrics and the dashboard's live feed hear every event the
runtime logs, without the actors knowing about either.

``install()`` puts :func:`tap` into the live processor chain, in place and just before the renderer:
loggers already bound (``rt.log`` and every call actor's) share that list, so they feed it too, and the
event a subscriber sees is the one written to the log, personal data already masked (``logs.redact_event``
runs earlier). Events below the configured log level are dropped by structlog before any processor, so
the metrics count ``info`` events only while the level is ``info`` or lower.

Subscribers are held weakly: a stopped instance's metrics and feeds go with it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import MutableMapping
from typing import Any, Protocol

import structlog

from speechai.logs import redact_value


class Subscriber(Protocol):
    def on_event(self, event: dict[str, Any]) -> None: ...


_subscribers: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()  # log calls also come from worker threads (anyio.to_thread)


def tap(_logger: object, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: hand a copy of the event to every subscriber; never fails the log call."""
    if not _subscribers:
        return event_dict
    event = dict(event_dict)
    event.setdefault("level", method)
    with _lock:
        subscribers = list(_subscribers)
    for sub in subscribers:
        try:
            sub.on_event(event)
        except Exception:  # a broken subscriber must never break logging (nor the actor that logged)
            pass
    return event_dict


def install() -> None:
    """Put the tap into structlog's current processor chain once (again after a reconfiguration)."""
    processors = structlog.get_config()["processors"]
    if any(p is tap for p in processors):
        return
    # In place: bound loggers keep a reference to this very list.
    processors.insert(max(len(processors) - 1, 0), tap)


def subscribe(subscriber: Subscriber) -> None:
    install()
    with _lock:
        _subscribers.add(subscriber)


def unsubscribe(subscriber: Subscriber) -> None:
    with _lock:
        _subscribers.discard(subscriber)


def public_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the live feed shows it: personal data masked even when the log chain has no redaction."""
    return redact_value({k: v for k, v in event.items() if k not in ("exc_info", "stack_info")})
