"""Retell webhook signatures: ``x-retell-signature: v=<ms>,d=<hex>``.

HMAC-SHA256 keyed with the API key over ``raw_body + str(timestamp_ms)``, the same construction as
``retell.lib.webhook_auth``; the current time is passed in so verification is testable and clock-driven.

The header is parsed strictly before any arithmetic or HMAC work: a timestamp of at most 15 ASCII digits
(epoch ms stays below 10**15 until the year 33658) and a digest of exactly 64 lowercase hex digits. So a
header is judged in constant time, and a receiver can refuse a stale or malformed one before it reads
the body.
"""

from __future__ import annotations

import hashlib
import hmac
import re

SIGNATURE_HEADER = "x-retell-signature"
DEFAULT_TOLERANCE_MS = 5 * 60 * 1000
MAX_HEADER_CHARS = 100  # "v=" + 15 digits + ",d=" + 64 hex, with room for surrounding spaces

_HEADER_RE = re.compile(r"v=([0-9]{1,15}),d=([0-9a-f]{64})")


def _digest(body: bytes, api_key: str, timestamp_ms: int) -> str:
    return hmac.new(api_key.encode(), body + str(timestamp_ms).encode(), hashlib.sha256).hexdigest()


def sign(body: bytes, api_key: str, timestamp_ms: int) -> str:
    return f"v={timestamp_ms},d={_digest(body, api_key, timestamp_ms)}"


def parse_header(header: str | None) -> tuple[int, str] | None:
    """``(timestamp_ms, hex digest)`` of a well-formed header, else None."""
    if not header or len(header) > MAX_HEADER_CHARS:
        return None
    match = _HEADER_RE.fullmatch(header.strip())
    if match is None:
        return None
    return int(match.group(1)), match.group(2)


def header_is_fresh(header: str | None, now_ms: int, tolerance_ms: int = DEFAULT_TOLERANCE_MS) -> bool:
    """True when ``header`` is well formed and its timestamp is within tolerance of now (body not needed)."""
    parsed = parse_header(header)
    return parsed is not None and abs(now_ms - parsed[0]) <= tolerance_ms


def verify(
    body: bytes, api_key: str, header: str | None, now_ms: int, tolerance_ms: int = DEFAULT_TOLERANCE_MS
) -> bool:
    """True when ``header`` signs ``body`` with ``api_key`` and its timestamp is within tolerance of now."""
    parsed = parse_header(header)
    if parsed is None:
        return False
    stamp, digest = parsed
    if abs(now_ms - stamp) > tolerance_ms:
        return False
    return hmac.compare_digest(_digest(body, api_key, stamp), digest)
