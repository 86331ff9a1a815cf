"""Requests no client library sends, written to the socket as bytes: an encoded newline in the path and
an ``Expect`` header that is not UTF-8 get a 417 problem, never aiohttp's 500 (its own Expect check
fails to encode such bytes, and a catch-all route that stopped at a newline left the path to it)."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.api.conftest import Api


async def _raw(api: Api, request: bytes) -> tuple[bytes, dict]:
    host, port = api.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        status = await reader.readline()
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, json.loads(body) if body else {}
    finally:
        writer.close()


@pytest.mark.parametrize("method", [b"TRACE", b"GET", b"POST"])
@pytest.mark.parametrize("path", [b"//a%0Ab", b"/batches%0A", b"/jobs/x%0D%0Ay", b"/"])
async def test_an_expect_header_that_is_not_utf8_gets_417_on_any_path(api: Api, method: bytes, path: bytes) -> None:
    status, body = await _raw(api, method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                   b"Expect: \x9d\xa1\xa06\r\nContent-Length: 0\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 417"), status
    assert body["status"] == 417 and "Expect" in body["detail"]
