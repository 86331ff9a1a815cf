"""A multipart upload to ``POST /batches/upload`` with the real aiohttp client."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import anyio


async def post_upload(url: str, path: Path, **fields: object) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v if isinstance(v, str) else json.dumps(v))
    form.add_field("file", await anyio.Path(path).read_bytes(), filename=path.name,
                   content_type="application/octet-stream")
    async with aiohttp.ClientSession() as http, http.post(url, data=form) as resp:
        return resp.status, await resp.json()
