"""Outbound webhook targets: only public http(s) addresses, unless the configuration allows private ones.

Checked when a subscription is created and again at every connection (a resolver that refuses private
answers), so a name that later resolves to a private address (DNS rebinding) is refused too."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

MAX_URL_CHARS = 2048


class TargetRefused(ValueError):
    pass


def is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, or TargetRefused naming why it may not be a webhook target."""
    if len(url) > MAX_URL_CHARS:
        raise TargetRefused(f"url is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"url must be http:// or https://, got {url[:80]!r}")
    host = parts.hostname
    if not host:
        raise TargetRefused(f"url has no host: {url[:80]!r}")
    if parts.username or parts.password:
        raise TargetRefused("url must not carry credentials (use the signature to authenticate)")
    if not allow_private:
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            raise TargetRefused(f"url targets a loopback host ({host}); allowed only with "
                                f"integrations.allow_private_targets")
        if (ip := _literal_ip(host)) is not None and is_private(ip):
            raise TargetRefused(f"url targets a private or loopback address ({ip}); allowed only with "
                                f"integrations.allow_private_targets")
    return url


class PublicOnlyResolver(AbstractResolver):
    """Resolves as usual, then refuses the name if any answer is private."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        answers: list[Any] = await self._inner.resolve(host, port, family)
        bad = [a["host"] for a in answers if is_private(a["host"])]
        if bad:
            raise OSError(f"{host} resolves to a private address ({bad[0]}); refused")
        return answers

    async def close(self) -> None:
        await self._inner.close()
