"""Bounds of the dialing fields of accounts and batches, for whoever writes them (the control API, the
config loader, the upload route): each error names the field, the value and what is allowed."""

from __future__ import annotations

import re
from typing import Any

from speechai.dialing import ab, caller_ids, predial

MAX_POOL = 500
MAX_DAILY_CAP = 10_000
MAX_DIALS_PER_SECOND = 1_000
MAX_RESERVED_INBOUND = 10_000
MAX_SKIP_DELAY_MIN = 7 * 24 * 60
E164 = re.compile(r"\+[1-9]\d{6,14}")


def _bounded(errors: list[str], field: str, value: Any, lo: float, hi: float) -> None:
    if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool) and lo <= value <= hi):
        errors.append(f"{field}: {value!r} is not a number from {lo:g} to {hi:g}")


def _pool(errors: list[str], pool: list[Any]) -> None:
    if len(pool) > MAX_POOL:
        errors.append(f"caller_ids: {len(pool)} numbers; at most {MAX_POOL}")
    for entry in pool:
        if not E164.fullmatch(entry.number):
            errors.append(f"caller_ids: {entry.number!r} is not an E.164 number such as +566001234567")
        if entry.region is not None and not 1 <= len(entry.region) <= 16:
            errors.append(f"caller_ids: region {entry.region!r} of {entry.number} must be 1 to 16 characters")


def account_errors(account: Any) -> list[str]:
    errors: list[str] = []
    _pool(errors, account.caller_ids)
    _bounded(errors, "caller_id_daily_cap", account.caller_id_daily_cap, 1, MAX_DAILY_CAP)
    _bounded(errors, "reserved_inbound_calls", account.reserved_inbound_calls, 0, MAX_RESERVED_INBOUND)
    _bounded(errors, "max_dials_per_second", account.max_dials_per_second, 1, MAX_DIALS_PER_SECOND)
    _bounded(errors, "predial_timeout_s", account.predial_timeout_s, 0.1, predial.MAX_TIMEOUT_S)
    _bounded(errors, "predial_skip_delay_min", account.predial_skip_delay_min, 1, MAX_SKIP_DELAY_MIN)
    if account.predial_on_error not in predial.ERROR_POLICIES:
        errors.append(f"predial_on_error: {account.predial_on_error!r} is not one of "
                      f"{', '.join(predial.ERROR_POLICIES)}")
    if account.predial_url is not None and not re.fullmatch(r"https?://\S{1,2000}", account.predial_url):
        errors.append(f"predial_url: {account.predial_url[:80]!r} is not an http(s) URL")
    if account.chile_rule_override is not None and not account.chile_rule_override.strip():
        errors.append("chile_rule_override: must say why (the audit trail), or be unset")
    return errors


def batch_errors(batch: Any) -> list[str]:
    errors: list[str] = []
    _pool(errors, batch.caller_ids)
    _bounded(errors, "caller_id_daily_cap", batch.caller_id_daily_cap, 1, MAX_DAILY_CAP)
    for check, value in ((caller_ids.check_use_case, batch.use_case), (ab.check_split, batch.agent_split)):
        try:
            check(value)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


ACCOUNT_FIELDS = ("caller_ids", "caller_id_daily_cap", "chile_rule_override", "reserved_inbound_calls",
                  "max_dials_per_second", "predial_url", "predial_timeout_s", "predial_on_error",
                  "predial_skip_delay_min")
NOT_NULL = ("reserved_inbound_calls", "predial_timeout_s", "predial_on_error", "predial_skip_delay_min",
            "caller_ids")


def _problems(errors: list[str], given: dict[str, Any]) -> list[dict[str, Any]]:
    """``"field: message"`` errors as the API's problem entries, each with the value that was sent."""
    out = []
    for error in errors:
        name = error.split(":", 1)[0].strip()
        out.append({"field": name, "value": given.get(name), "error": error})
    return out


def account_update(account: Any, changes: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An account settings change checked against these bounds: the changes as they are to be stored (an
    empty ``chile_rule_override`` clears it) and the problems (field, value, error; none: valid). Fields
    other than the dialing ones pass through unchecked (the caller bounds them)."""
    body = dict(changes)
    if "chile_rule_override" in body:
        body["chile_rule_override"] = (body["chile_rule_override"] or "").strip() or None
    if body.get("caller_ids", ...) is None:
        body["caller_ids"] = []
    nulls = [f"{k}: may not be null" for k in NOT_NULL if k in body and body[k] is None]
    if nulls:
        return body, _problems(nulls, changes)
    dialing = {k: v for k, v in body.items() if k in ACCOUNT_FIELDS}
    candidate = type(account).model_validate({**account.model_dump(), **dialing})
    return body, _problems(account_errors(candidate), changes)
