"""Async Retell AI client over aiohttp.

It never re-sends a request: create-call retries belong to the caller, who must reuse the same
idempotency key (the attempt id). Every failure surfaces as one of ``speechai.retell.errors``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from types import TracebackType
from typing import Any

import aiohttp
import structlog

from speechai.retell.errors import (
    BadRequest,
    MalformedResponse,
    NotFound,
    PaymentRequired,
    ProviderTimeout,
    RateLimited,
    RetellError,
    ServerError,
    Unauthorized,
    UnknownAsset,
)

log = structlog.get_logger("speechai.retell.client")

# Guard against a provider that keeps answering has_more with a cursor that never ends.
_MAX_PAGES = 1000


@dataclass
class CallsPage:
    items: list[dict[str, Any]]
    has_more: bool
    pagination_key: str | None


def stringify_value(value: Any) -> str:
    """Retell dynamic variables accept strings only; render values the way an agent should say them."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))  # spreadsheets give 1500.0 for 1500
        return repr(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return str(value.quantize(Decimal(1)))
        return format(value.normalize(), "f")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def stringify_dynamic_variables(variables: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): stringify_value(value) for key, value in variables.items()}


_STATUS_ERRORS: dict[int, type[RetellError]] = {
    400: BadRequest,
    401: Unauthorized,
    402: PaymentRequired,
    404: NotFound,
    422: UnknownAsset,
}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # HTTP-date form: not worth parsing, the caller has its own backoff


def _error_for(status: int, body: bytes, headers: Mapping[str, str]) -> RetellError:
    message = body.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            message = parsed["message"]
    except ValueError:
        pass
    if status == 429:
        return RateLimited(message, status, retry_after=_retry_after(headers))
    if status >= 500:
        return ServerError(message, status)
    return _STATUS_ERRORS.get(status, RetellError)(message, status)


class RetellClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 15.0,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = 100,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        # The timeout bounds the provider's answer, not the wait for a pooled connection: with thousands of
        # calls in flight a create-call queued behind the pool must not time out before it was even sent.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self._max_connections = max_connections
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> RetellClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._max_connections))
            self._owns_session = True
        return self._session

    async def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One HTTP exchange; returns parsed JSON (``None`` for an empty 2xx body)."""
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        url = f"{self._base_url}{path}"
        try:
            async with self._get_session().request(
                method, url, json=body, headers=headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
        except TimeoutError as exc:
            raise ProviderTimeout(f"{method} {path} timed out") from exc
        except aiohttp.ClientError as exc:
            raise ProviderTimeout(f"{method} {path} failed: {exc!r}") from exc
        if status >= 300:
            err = _error_for(status, raw, resp_headers)
            log.warning("retell_error", method=method, path=path, status=status, message=err.message)
            raise err
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise MalformedResponse(f"{method} {path}: body is not JSON", status) from exc

    @staticmethod
    def _expect_call(data: Any, what: str) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("call_id"), str):
            raise MalformedResponse(f"{what}: expected a call object with call_id")
        return data

    async def create_phone_call(
        self,
        *,
        from_number: str,
        to_number: str,
        idempotency_key: str,
        override_agent_id: str | None = None,
        override_agent_version: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        dynamic_variables: Mapping[str, Any] | None = None,
        agent_override: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Place one call. Never retried here: on ``ProviderTimeout`` repeat with the SAME key."""
        if not idempotency_key:
            raise ValueError("idempotency_key is required: a create-call without one can dial twice")
        body: dict[str, Any] = {
            "from_number": from_number,
            "to_number": to_number,
            "idempotency_key": idempotency_key,
        }
        if override_agent_id is not None:
            body["override_agent_id"] = override_agent_id
        if override_agent_version is not None:
            body["override_agent_version"] = override_agent_version
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if dynamic_variables is not None:
            body["retell_llm_dynamic_variables"] = stringify_dynamic_variables(dynamic_variables)
        if agent_override is not None:
            body["agent_override"] = dict(agent_override)
        data = await self._request("POST", "/v2/create-phone-call", body)
        call = self._expect_call(data, "create-phone-call")
        log.info("retell_call_created", call_id=call["call_id"], idempotency_key=idempotency_key)
        return call

    async def get_call(self, call_id: str) -> dict[str, Any]:
        return self._expect_call(await self._request("GET", f"/v2/get-call/{call_id}"), "get-call")

    async def stop_call(self, call_id: str) -> None:
        await self._request("POST", f"/v2/stop-call/{call_id}")

    async def list_calls(
        self,
        *,
        metadata: Mapping[str, str] | None = None,
        limit: int = 100,
        pagination_key: str | None = None,
    ) -> CallsPage:
        body: dict[str, Any] = {"limit": limit}
        if metadata:
            filters = [{"type": "string", "op": "eq", "key": k, "value": v} for k, v in metadata.items()]
            body["filter_criteria"] = {"metadata": filters}
        if pagination_key is not None:
            body["pagination_key"] = pagination_key
        data = await self._request("POST", "/v3/list-calls", body)
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise MalformedResponse("list-calls: expected {items, has_more, pagination_key}")
        items = data["items"]
        if not all(isinstance(item, dict) for item in items):
            raise MalformedResponse("list-calls: items must be call objects")
        key = data.get("pagination_key")
        cursor = key if isinstance(key, str) else None
        return CallsPage(items=items, has_more=bool(data.get("has_more")), pagination_key=cursor)

    async def find_calls_by_metadata(self, key: str, value: str) -> list[dict[str, Any]]:
        """Every call whose ``metadata[key] == value``, following pagination to the end."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await self.list_calls(metadata={key: value}, pagination_key=cursor)
            found.extend(page.items)
            if not page.has_more or not page.pagination_key or page.pagination_key == cursor:
                return found
            cursor = page.pagination_key
        raise MalformedResponse(f"list-calls: more than {_MAX_PAGES} pages for {key}={value}")

    async def get_concurrency(self) -> dict[str, Any]:
        data = await self._request("GET", "/get-concurrency")
        if not isinstance(data, dict):
            raise MalformedResponse("get-concurrency: expected an object")
        return data
