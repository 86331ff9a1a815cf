"""Errors raised by the Retell client, one class per way a request can go wrong.

Callers decide from the class alone: ``ProviderTimeout`` on create-call means the outcome is
UNKNOWN (the call may exist), every other class means the provider answered and said no.
"""

from __future__ import annotations


class RetellError(Exception):
    """Base: ``status`` is the HTTP status when the provider answered, else ``None``."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message


class BadRequest(RetellError):
    """400: the request itself is wrong (e.g. a non-E.164 number); repeating it will not help."""


class Unauthorized(RetellError):
    """401: API key missing or wrong."""


class PaymentRequired(RetellError):
    """402: the workspace has no valid payment; dialing must pause for the account."""


class NotFound(RetellError):
    """404: no such call."""


class UnknownAsset(RetellError):
    """422: unknown agent or phone number."""


class RateLimited(RetellError):
    """429: throttled or concurrency limit reached; not an attempt, back off and redial."""

    def __init__(self, message: str, status: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class ServerError(RetellError):
    """5xx from the provider."""


class ProviderTimeout(RetellError):
    """No answer: timeout or connection failure. For create-call the call may or may not exist."""


class MalformedResponse(RetellError):
    """The provider answered with a body that is not JSON or not the expected shape."""
