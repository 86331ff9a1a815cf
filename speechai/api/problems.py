"""One error shape for every answer that is not a success: RFC 9457 problem details.

``{"type", "title", "status", "detail", "problems"?}``; ``error`` repeats ``detail`` for clients written
against the earlier ``{"error": ...}`` shape.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROBLEM_TYPE = "https://speechai.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    field: str | None = Field(description="dotted name of the field, null when the body as a whole is wrong")
    value: Any = Field(None, description="the value given (shortened when long)")
    error: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI naming the kind of problem")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what was wrong, naming the field, the value and the limit")
    error: str = Field(description="same as detail (earlier clients read this key)")
    problems: list[FieldProblem] | None = None
    retry_after_s: float | None = Field(None, description="when to try again (also the Retry-After header)")


def short(value: Any, limit: int = 200) -> Any:
    """A value echoed in an error: as given when small, else its shortened repr."""
    text = json.dumps(value, default=str)
    return value if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return "error"


def problem_body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": PROBLEM_TYPE + _slug(status), "title": title, "status": status, "detail": detail,
            "error": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.Response(text=json.dumps(problem_body(status, detail, **extra), default=str), status=status,
                        content_type=PROBLEM_CONTENT_TYPE, headers=headers)


class ApiError(Exception):
    """Raised by a handler or helper; the middleware answers it as problem details."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra

    def response(self) -> web.Response:
        return problem(self.status, self.detail, headers=self.headers, **self.extra)


def field_problems(exc: Exception) -> list[dict[str, Any]]:
    """Field/value problems of a failed validation, whatever the validator raised."""
    if isinstance(exc, ValidationError):
        return [{"field": ".".join(map(str, e["loc"])) or None, "value": short(e.get("input")),
                 "error": e["msg"]} for e in exc.errors()]
    return [{"field": None, "value": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}]


def describe(problems: list[dict[str, Any]]) -> str:
    """One line naming each field, its problem and the value given."""
    parts = []
    for p in problems[:5]:
        value = p.get("value")
        shown = "" if value is None or repr(value) in p["error"] else f", got {short(value, 80)!r}"
        parts.append(f"{p['field'] or 'body'}: {p['error']}{shown}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return "; ".join(parts) + more


def invalid(exc: Exception, what: str = "") -> ApiError:
    """422 for a failed validation: the detail names every field, ``problems`` lists them."""
    found = field_problems(exc)
    prefix = f"{what}: " if what else ""
    return ApiError(422, prefix + describe(found), problems=found)
