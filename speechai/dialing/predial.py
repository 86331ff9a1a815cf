"""Pre-dial eligibility hook: right before a dial, a signed POST asks the creditor whether to call.

Body ``{"type": "predial.check", "data": {job_id, batch_id, account_id, person_key, national_id, name,
phone, attempt}}``, signed with Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
``webhook-signature`` headers; secret from the environment variable the account names). The answer is
``{"action": "call" | "skip" | "exclude", "reason": "..."}``. A timeout (default 2 s), a non-2xx status or an
unreadable answer is an error, decided by the account's policy: ``skip`` (fail closed, the default:
retry later) or ``call``.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import anyio
from standardwebhooks import Webhook

ACTIONS = ("call", "skip", "exclude")
ERROR_POLICIES = ("skip", "call")
MAX_ANSWER_BYTES = 16 * 1024
MAX_REASON_CHARS = 200
MAX_TIMEOUT_S = 30.0


class PredialError(Exception):
    """The hook gave no usable answer (timeout, connection, status, body)."""


@dataclass(frozen=True)
class Decision:
    action: str  # call | skip | exclude
    reason: str
    error: bool = False  # decided by the error policy, not by the creditor


def parse_answer(status: int, body: bytes) -> Decision:
    if not 200 <= status < 300:
        raise PredialError(f"hook answered HTTP {status}")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise PredialError("hook answer is not JSON") from exc
    action = data.get("action") if isinstance(data, dict) else None
    if action not in ACTIONS:
        raise PredialError(f"hook answer action {str(action)[:40]!r} is not one of {', '.join(ACTIONS)}")
    reason = data.get("reason")
    return Decision(action, str(reason)[:MAX_REASON_CHARS] if reason else "")


def apply_policy(policy: str, error: str) -> Decision:
    if policy not in ERROR_POLICIES:
        raise ValueError(f"predial_on_error {policy!r} is not one of {', '.join(ERROR_POLICIES)}")
    return Decision(policy, f"pre-dial hook failed ({error}); policy {policy}", error=True)


def signed_headers(secret: str, body: str, wall_now: datetime) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(wall_now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, wall_now, body)}


def payload(job: Any, phone: str) -> dict[str, Any]:
    return {"type": "predial.check", "data": {
        "job_id": str(job.id), "batch_id": job.batch_id, "account_id": job.account_id,
        "person_key": job.person_key, "national_id": job.national_id, "name": job.name, "phone": phone,
        "attempt": len(job.attempts) + 1}}


async def ask(url: str, secret: str, body: dict[str, Any], *, timeout_s: float, wall_now: datetime) -> Decision:
    """One signed request; raises PredialError for every way it can fail."""
    text = json.dumps(body, separators=(",", ":"))
    try:
        with anyio.fail_after(min(timeout_s, MAX_TIMEOUT_S)):
            async with aiohttp.ClientSession() as http, http.post(
                    url, data=text, headers=signed_headers(secret, text, wall_now), allow_redirects=False) as resp:
                answer = await resp.content.read(MAX_ANSWER_BYTES + 1)
                if len(answer) > MAX_ANSWER_BYTES:
                    raise PredialError(f"hook answer longer than {MAX_ANSWER_BYTES} bytes")
                return parse_answer(resp.status, answer)
    except TimeoutError as exc:
        raise PredialError(f"no answer within {timeout_s:g} s") from exc
    except aiohttp.ClientError as exc:
        raise PredialError(f"{type(exc).__name__}: {exc}") from exc


async def check(account: Any, job: Any, phone: str, *, wall_now: datetime) -> Decision:
    """The account's hook asked about dialing ``phone`` for ``job``, its error policy applied."""
    secret = os.environ.get(account.predial_secret_env, "")
    if not secret:
        return apply_policy(account.predial_on_error, f"signing secret {account.predial_secret_env} is not set")
    try:
        return await ask(account.predial_url, secret, payload(job, phone), timeout_s=account.predial_timeout_s,
                         wall_now=wall_now)
    except PredialError as exc:
        return apply_policy(account.predial_on_error, str(exc))
    except ValueError as exc:  # e.g. a secret that is not base64
        return apply_policy(account.predial_on_error, f"{type(exc).__name__}: {exc}")
