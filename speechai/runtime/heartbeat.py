"""Lease heartbeat: per interval, one bulk write renews every job this instance holds, and the
concurrency grants are renewed (and shrunk to what is used plus headroom)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anyio
from bson import ObjectId
from pymongo.errors import ConnectionFailure

from speechai.runtime.context import Runtime
from speechai.store.jobs import renew_leases


class Heartbeat:
    def __init__(self, rt: Runtime, held: Callable[[], Iterable[str]], *,
                 on_beat: Callable[[], None] | None = None, max_interval_s: float | None = None) -> None:
        self.rt = rt
        self.held = held
        self.on_beat = on_beat  # e.g. the systemd watchdog: alive only while the database answers
        self.max_interval_s = max_interval_s  # e.g. half of systemd's WatchdogSec

    async def run(self) -> None:
        interval = self.rt.limits.lease_ttl_s / 3  # real seconds: leases are about process liveness
        if self.max_interval_s is not None:
            interval = min(interval, self.max_interval_s)
        while True:
            held, until = list(self.held()), self.rt.lease_until_ms()
            try:
                rt = self.rt
                await renew_leases(rt.instance_id, rt.generation, [ObjectId(j) for j in held], until)
                await rt.quotas.renew()
            except ConnectionFailure as exc:
                # Leases may lapse during an outage; actors then find their checkpoints fenced off.
                self.rt.log.warning("heartbeat_database_unavailable", error=str(exc))
                await anyio.sleep(1.0)
                continue
            if self.on_beat is not None:
                self.on_beat()
            await anyio.sleep(interval)
