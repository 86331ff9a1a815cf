"""API keys, roles and the access each route declares.

A key is ``<key id>.<secret>``: the id is public (it names the key in lists and the audit log), the
secret is 256 random bits kept only as its SHA-256 digest and compared in constant time. Every request
reads the key's document (one ``_id`` lookup), so a revocation counts from the next request.

Routes declare who may call them with :func:`requires` (route modules outside this package import it)::

    @requires(Role.OPERATOR, Role.VIEWER, account_from="path:account_id")
    async def handler(request): ...

``account_from``: ``"path:<name>"`` or ``"query:<name>"`` — the middleware answers 404 before the handler
runs when the key may not see that account; ``"handler"`` — the handler finds the account itself (from
the batch or job it loads, a form field) and calls :func:`ensure_account`; ``None`` — instance-wide
(only admin keys, whatever roles are listed). Admin keys may call every declared route. A route that
declares nothing (a handler passed through ``extra_routes`` without ``requires``) is admin-only.
:func:`public` marks a route that needs no key.

A key whose role may not call an account route gets 404, not 403, when the request names another
account's thing (or one that does not exist): the account in the path or query, a thing named by a
parameter with a registered resolver (:func:`register_account_resolver`: ``batch_id``, ``job_id`` ...),
or the JSON body's ``body_account`` field. 403 is the answer only when the thing is the key's own, or
the route is instance-wide (admin only): ``/accounts`` (list, create), ``/keys``, undeclared routes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web

from speechai.api.problems import ApiError
from speechai.store.api_models import ApiKey, Role
from speechai.store.models import epoch_ms, wall_ms
from speechai.store.point_reads import PointReads

ADMIN_TOKEN_KEY_ID = "control-token"  # SPEECHAI_CONTROL_TOKEN (or the token file): an admin key
KEY_ID_RE = re.compile(r"key_[0-9a-f]{16}")
_ACCESS_ATTR = "__speechai_access__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Access:
    roles: frozenset[Role]  # besides admin
    account_from: str | None = None  # "path:<name>", "query:<name>", "handler" or None (instance-wide)
    public: bool = False
    body_account: str | None = None  # the JSON body's field naming the account (a handler-checked route)


ADMIN_ONLY = Access(roles=frozenset())
PUBLIC = Access(roles=frozenset(), public=True)


def requires(*roles: Role | str, account_from: str | None = None,
             body_account: str | None = None) -> Callable[[F], F]:
    """Declare the roles (besides admin) that may call a handler and where its account comes from."""
    if account_from is not None and not (account_from == "handler" or account_from.startswith(("path:", "query:"))):
        raise ValueError(f"account_from must be 'path:<name>', 'query:<name>', 'handler' or None, got {account_from!r}")
    access = Access(roles=frozenset(Role(r) for r in roles), account_from=account_from, body_account=body_account)

    def mark(handler: F) -> F:
        setattr(handler, _ACCESS_ATTR, access)
        return handler

    return mark


def public(handler: F) -> F:
    setattr(handler, _ACCESS_ATTR, PUBLIC)
    return handler


def access_of(handler: Any) -> Access:
    return getattr(handler, _ACCESS_ATTR, ADMIN_ONLY)


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: Role
    account_id: str | None  # None: admin, every account

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def sees(self, account_id: str | None) -> bool:
        return self.is_admin or (account_id is not None and account_id == self.account_id)


# Request storage keys (typed where aiohttp offers it).
PRINCIPAL_KEY: Any = web.RequestKey("speechai_principal", Principal) if hasattr(web, "RequestKey") \
    else "speechai_principal"


def principal(request: web.Request) -> Principal:
    found = request.get(PRINCIPAL_KEY)
    if not isinstance(found, Principal):
        raise ApiError(401, "missing or wrong bearer token (an API key or the control token)")
    return found


def ensure_account(request: web.Request, account_id: str | None, not_found: str) -> None:
    """404 with ``not_found`` when the request's key may not see ``account_id``: another account's
    batch, job or settings look exactly like ones that do not exist."""
    if not principal(request).sees(account_id):
        raise ApiError(404, not_found)


def account_scope(request: web.Request) -> str | None:
    """The account a list is limited to: the key's own, or None (all) for an admin key."""
    p = principal(request)
    return None if p.is_admin else p.account_id


# --- keys ---------------------------------------------------------------------------------------------


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


async def create_key(*, role: Role, account_id: str | None, name: str, created_by: str,
                     now: datetime) -> tuple[ApiKey, str]:
    """A new key and its token (``<id>.<secret>``), the only time the secret exists outside a hash."""
    if (role == Role.ADMIN) != (account_id is None):
        raise ValueError("an admin key has no account; every other role needs one")
    key_id = f"key_{secrets.token_hex(8)}"
    secret = secrets.token_urlsafe(32)
    key = ApiKey(id=key_id, account_id=account_id, role=role, name=name, secret_sha256=hash_secret(secret),
                 created_at=now, created_ms=epoch_ms(now), created_by=created_by)
    await key.insert()
    return key, f"{key_id}.{secret}"


async def revoke_key(key_id: str, *, revoked_by: str) -> ApiKey | None:
    """Revoke at once (integer ``$set``, never a datetime); None when there is no such key."""
    coll = ApiKey.get_pymongo_collection()
    await coll.update_one({"_id": key_id, "revoked_ms": {"$eq": None}},
                          {"$set": {"revoked_ms": wall_ms(), "revoked_by": revoked_by}})
    return await ApiKey.get(key_id)


# read on every request (a revocation applies to the very next one), shared by the requests of a moment
_key_reads: PointReads[ApiKey] = PointReads(ApiKey)


async def authenticate(header: str, admin_token: str) -> Principal | None:
    """The principal behind an ``Authorization`` header value, or None."""
    # Header bytes that are not UTF-8 arrive as surrogates: compare them, never fail on them.
    given = header.encode("utf-8", "surrogatepass")
    if admin_token and hmac.compare_digest(given, f"Bearer {admin_token}".encode()):
        return Principal(ADMIN_TOKEN_KEY_ID, Role.ADMIN, None)
    if not header.startswith("Bearer "):
        return None
    key_id, _, secret = header[len("Bearer "):].partition(".")
    if not KEY_ID_RE.fullmatch(key_id) or not secret:
        return None
    key = await _key_reads.get(key_id)
    if key is None or key.revoked_ms is not None:
        return None
    if not hmac.compare_digest(hash_secret(secret).encode(), key.secret_sha256.encode()):
        return None
    return Principal(key.id, key.role, key.account_id)


def allowed(access: Access, who: Principal) -> bool:
    """Whether ``who``'s role may call a route declared with ``access`` (the account is checked apart)."""
    if who.is_admin:
        return True
    return access.account_from is not None and who.role in access.roles


# parameter name -> (what it names, its owner's account or None when there is no such thing)
AccountResolver = Callable[[str], Awaitable[str | None]]
_RESOLVERS: dict[str, tuple[str, AccountResolver]] = {}
BODY_PEEK_MAX = 2**20  # a refused request's JSON body is read this far to find the account it names


def register_account_resolver(param: str, label: str, resolve: AccountResolver) -> None:
    """How the account of the thing a path or query parameter names is found (``"batch_id"``, ``"batch"``,
    a lookup), so a key whose role is refused gets 404 for another account's thing."""
    _RESOLVERS[param] = (label, resolve)


async def _body_account(request: web.Request, field: str) -> str | None:
    """The account a (refused) JSON body names, if it is small and readable; else None."""
    if request.content_length is not None and request.content_length > BODY_PEEK_MAX:
        return None
    chunks, size = [], 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > BODY_PEEK_MAX:
            return None
        chunks.append(chunk)
    data = b"".join(chunks)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    found = value.get(field) if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


async def foreign_thing(request: web.Request, access: Access, who: Principal) -> str | None:
    """For a request refused by role: the 404 detail when it names a thing of an account ``who`` may not
    see (or one that does not exist), else None (the refusal is a 403 about the key's own role)."""
    if access.account_from is None:
        return None  # instance-wide: the role alone decides
    account = account_in_request(request, access)
    if account is not None and not who.sees(account):
        return f"no account {account[:100]!r}"
    for param, (label, resolve) in _RESOLVERS.items():
        value = request.match_info.get(param, request.query.get(param))
        if value is None:
            continue
        try:
            value.encode()
            owner = await resolve(value)
        except (UnicodeEncodeError, ValueError):
            owner = None
        if owner is None or not who.sees(owner):
            return f"no {label} {value[:100]!r}"
    if access.body_account is not None and request.method in ("POST", "PUT", "PATCH"):
        named = await _body_account(request, access.body_account)
        if named is not None and not who.sees(named):
            return f"no account {named[:100]!r}"
    return None


def account_in_request(request: web.Request, access: Access) -> str | None:
    source = access.account_from or ""
    kind, _, name = source.partition(":")
    if kind == "path":
        return request.match_info.get(name)
    if kind == "query":
        return request.query.get(name)
    return None
