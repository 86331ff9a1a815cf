"""A multipart upload to ``POST /batches/upload`` with the real aiohttp client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from aiohttp import web


async def post_upload(url: str, path: Path, **fields: object) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v if isinstance(v, str) else json.dumps(v))
    form.add_field("file", await anyio.Path(path).read_bytes(), filename=path.name,
                   content_type="application/octet-stream")
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as resp:
        return resp.status, await resp.json()


def operator_app(**kwargs: Any) -> web.Application:
    """An app serving the upload routes as the control endpoint would for an admin key (its auth
    middleware puts the key's principal on the request; the upload checks the account against it)."""
    from speechai.api.auth import PRINCIPAL_KEY, Principal
    from speechai.store.api_models import Role

    @web.middleware
    async def as_admin(request: web.Request, handler: Any) -> web.StreamResponse:
        request[PRINCIPAL_KEY] = Principal(key_id="test-admin", role=Role.ADMIN, account_id=None)
        return await handler(request)

    return web.Application(middlewares=[as_admin], **kwargs)
