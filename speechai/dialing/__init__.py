"""Dialing controls on the dial path: caller-ID pools and Chile's 600/809 rule, the failure circuit
breaker, the dial-rate limit, reserved inbound capacity, the pre-dial eligibility hook and A/B agent
splits (docs/dialing.md). Pure rules with thin stores; the call actor calls into them."""

from __future__ import annotations

from typing import Any


def instance_state(rt: Any, name: str, factory: Any) -> Any:
    """Per-instance memory kept on the runtime object (one per running instance, gone with it)."""
    store = rt.__dict__.setdefault("_dialing_state", {})
    if name not in store:
        store[name] = factory()
    return store[name]
