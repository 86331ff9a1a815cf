"""Our webhook signatures against the official SDK's ``retell.lib.webhook_auth``."""

from __future__ import annotations

import time

from retell.lib import webhook_auth

from speechai.retell.signature import sign, verify

KEY = "key_abc123"
BODY = '{"event":"call_ended","call":{"call_id":"call_1","to_number":"+56912345678","note":"señal"}}'.encode()


def now_ms() -> int:
    # The SDK's top-level verify reads wall time itself, so these signatures must be fresh.
    return int(time.time() * 1000)


def test_sdk_signature_verifies_with_ours() -> None:
    stamp = now_ms()
    header = webhook_auth.symmetric["sign"](BODY.decode(), KEY, stamp)
    assert verify(BODY, KEY, header, now_ms=stamp + 1000)
    assert header == sign(BODY, KEY, stamp)


def test_our_signature_verifies_with_sdk() -> None:
    header = sign(BODY, KEY, now_ms())
    assert webhook_auth.verify(BODY.decode(), KEY, header)


def test_tampered_body_wrong_key_and_garbage_rejected_by_both() -> None:
    stamp = now_ms()
    header = sign(BODY, KEY, stamp)
    tampered = BODY.replace(b"call_1", b"call_2")
    assert not verify(tampered, KEY, header, now_ms=stamp)
    assert not webhook_auth.verify(tampered.decode(), KEY, header)
    assert not verify(BODY, "other-key", header, now_ms=stamp)
    assert not webhook_auth.verify(BODY.decode(), "other-key", header)
    for bad in (None, "", "v=1,d=zz", f"v={stamp}", header.upper(), header + "0"):
        assert not verify(BODY, KEY, bad, now_ms=stamp)


def test_stale_or_future_timestamp_rejected_like_sdk() -> None:
    stamp = now_ms()
    old = sign(BODY, KEY, stamp - 300_001)
    assert not verify(BODY, KEY, old, now_ms=stamp)
    assert not webhook_auth.verify(BODY.decode(), KEY, old)
    edge = sign(BODY, KEY, stamp - 299_000)
    assert verify(BODY, KEY, edge, now_ms=stamp)
    future = sign(BODY, KEY, stamp + 400_000)
    assert not verify(BODY, KEY, future, now_ms=stamp)
    assert verify(BODY, KEY, future, now_ms=stamp, tolerance_ms=500_000)
    # SDK with an explicit clock agrees on the boundary.
    sdk_verify = webhook_auth.symmetric["verify"]
    assert sdk_verify(BODY.decode(), KEY, old, {"timestamp": stamp - 1}) is True
    assert verify(BODY, KEY, old, now_ms=stamp - 1)
