"""This instance's side of the shared provider concurrency: slots taken and freed in memory, out of
blocks leased from the database (``store.quotas``) only when the grant runs out, and renewed, grown or
shrunk on the heartbeat."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from speechai.store import quotas

BLOCK = 16  # at most this many slots are held beyond current use


@dataclass
class _Scope:
    limit: int
    granted: int = 0
    in_use: int = 0
    contended: bool = False  # another instance waited for slots when the grant was last written
    # One grant write at a time: a heartbeat renewal computed before a take's write would otherwise
    # land after it and hand back the slot the take just gave to a call.
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def headroom(self) -> int:
        # Small limits are shared slot by slot, or one instance's spare slots would starve the others.
        return min(BLOCK, self.limit // 10)


class QuotaKeeper:
    def __init__(self, owner: str, lease_until_ms: Callable[[], int], now_ms: Callable[[], int]) -> None:
        self.owner = owner
        self._until = lease_until_ms
        self._now = now_ms
        self._scopes: dict[str, _Scope] = {}

    def in_use(self, scope: str) -> int:
        s = self._scopes.get(scope)
        return 0 if s is None else s.in_use

    async def take(self, scope: str, limit: int, *, force: bool = False) -> bool:
        """One slot of ``scope``; ``force`` counts a call that exists anyway (a resumed one)."""
        return await self.take_many(scope, limit, 1, force=force) == 1

    async def take_many(self, scope: str, limit: int, n: int, *, force: bool = False) -> int:
        """Up to ``n`` slots of ``scope`` with at most one grant write; how many were taken (all of them
        with ``force``: calls that exist anyway, such as re-adopted ones)."""
        if n <= 0:
            return 0
        s = self._scopes.setdefault(scope, _Scope(limit))
        s.limit = limit
        async with s.lock:
            if s.in_use + n > s.granted or s.granted > limit:
                await self._set(scope, s, want=min(limit, s.in_use + n + s.headroom),
                                keep=s.in_use + (n if force else 0))
            got = n if force else max(0, min(n, s.granted - s.in_use))
            s.in_use += got
            return got

    def take_nowait(self, scope: str, limit: int) -> bool:
        """One slot of ``scope`` out of what is already granted, without the database; False when that
        needs a grant write (``take`` then decides), or when another instance waits for slots (``trim``
        hands them back first: its fair share)."""
        s = self._scopes.get(scope)
        if s is None or s.lock.locked() or s.contended or s.in_use >= s.granted or s.granted > limit:
            return False
        s.limit = limit
        s.in_use += 1
        return True

    def free(self, scope: str) -> None:
        s = self._scopes.get(scope)
        if s is not None and s.in_use > 0:
            s.in_use -= 1

    async def trim(self) -> None:
        """Hand back what is held beyond use plus headroom after calls finished, when another instance
        is waiting for it (else the heartbeat shrinks the grant: no write per call for a lone instance)."""
        for scope, s in list(self._scopes.items()):
            async with s.lock:
                if s.contended and s.granted > s.in_use + s.headroom:
                    await self._set(scope, s, want=s.in_use + s.headroom, keep=s.in_use)

    async def _set(self, scope: str, s: _Scope, *, want: int, keep: int) -> None:
        grant = await quotas.set_grant(scope, self.owner, want=want, keep=keep, limit=s.limit,
                                       until_ms=self._until(), now_ms=self._now())
        s.granted, s.contended = grant.n, grant.contended

    async def renew(self) -> None:
        """Heartbeat: keep what is used plus headroom, hand the rest back."""
        for scope, s in list(self._scopes.items()):
            async with s.lock:
                want = min(s.limit, s.in_use + s.headroom) if s.in_use else 0
                if want == 0 and s.granted == 0 and not s.contended:
                    continue
                await self._set(scope, s, want=want, keep=s.in_use)
