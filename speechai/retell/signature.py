"""Retell webhook signatures: ``x-retell-signature: v=<ms>,d=<hex>``.

HMAC-SHA256 keyed with the API key over ``raw_body + str(timestamp_ms)``, the same construction as
``retell.lib.webhook_auth``; the current time is passed in so verification is testable and clock-driven.
"""

from __future__ import annotations

import hashlib
import hmac
import re

SIGNATURE_HEADER = "x-retell-signature"
DEFAULT_TOLERANCE_MS = 5 * 60 * 1000

_HEADER_RE = re.compile(r"v=(\d+),d=([0-9a-f]{64})")


def _digest(body: bytes, api_key: str, timestamp_ms: int) -> str:
    return hmac.new(api_key.encode(), body + str(timestamp_ms).encode(), hashlib.sha256).hexdigest()


def sign(body: bytes, api_key: str, timestamp_ms: int) -> str:
    return f"v={timestamp_ms},d={_digest(body, api_key, timestamp_ms)}"


def verify(
    body: bytes, api_key: str, header: str | None, now_ms: int, tolerance_ms: int = DEFAULT_TOLERANCE_MS
) -> bool:
    """True when ``header`` signs ``body`` with ``api_key`` and its timestamp is within tolerance of now."""
    if not header:
        return False
    match = _HEADER_RE.fullmatch(header.strip())
    if match is None:
        return False
    stamp = int(match.group(1))
    if abs(now_ms - stamp) > tolerance_ms:
        return False
    return hmac.compare_digest(_digest(body, api_key, stamp), match.group(2))
