"""Lease heartbeat: per interval, one bulk write renews every job this instance holds, the concurrency
grants are renewed (and shrunk to what is used plus headroom), and the instance's liveness record is
written (beat time, scheduler's last pass, calls in flight, pid and host) for ``speechai status``."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable

import anyio
from bson import ObjectId
from pymongo.errors import ConnectionFailure, PyMongoError

from speechai.runtime.context import Runtime
from speechai.store.instances import record_beat, record_stop
from speechai.store.jobs import renew_leases

STOP_WRITE_S = 2.0  # a clean stop's record is best effort: an unreachable database must not delay it


class Heartbeat:
    def __init__(self, rt: Runtime, held: Callable[[], Iterable[str]], *,
                 on_beat: Callable[[], None] | None = None, max_interval_s: float | None = None,
                 last_pass_ms: Callable[[], int | None] | None = None) -> None:
        self.rt = rt
        self.held = held
        self.on_beat = on_beat  # e.g. the systemd watchdog: alive only while the database answers
        self.max_interval_s = max_interval_s  # e.g. half of systemd's WatchdogSec
        self.last_pass_ms = last_pass_ms  # the scheduler's last fill pass (wall ms), None before the first
        self.pid, self.host = os.getpid(), socket.gethostname()
        self.started_ms: int | None = None

    async def run(self) -> None:
        interval = self.rt.limits.lease_ttl_s / 3  # real seconds: leases are about process liveness
        if self.max_interval_s is not None:
            interval = min(interval, self.max_interval_s)
        try:
            while True:
                held, until = list(self.held()), self.rt.lease_until_ms()
                try:
                    rt = self.rt
                    await renew_leases(rt.instance_id, rt.generation, [ObjectId(j) for j in held], until)
                    await rt.quotas.renew()
                    await self._record(len(held))
                except ConnectionFailure as exc:
                    # Leases may lapse during an outage; actors then find their checkpoints fenced off.
                    self.rt.log.warning("heartbeat_database_unavailable", error=str(exc))
                    await anyio.sleep(1.0)
                    continue
                if self.on_beat is not None:
                    self.on_beat()
                await anyio.sleep(interval)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_WRITE_S):
                try:
                    await record_stop(self.rt.instance_id, self.rt.generation, now_ms=self.rt.now_ms(),
                                      last_pass_ms=self.last_pass_ms() if self.last_pass_ms is not None else None)
                except PyMongoError as exc:
                    self.rt.log.warning("instance_stop_not_recorded", error=str(exc))

    async def _record(self, in_flight: int) -> None:
        now = self.rt.now_ms()
        if self.started_ms is None:
            self.started_ms = now
        last_pass = self.last_pass_ms() if self.last_pass_ms is not None else None
        await record_beat(self.rt.instance_id, self.rt.generation, now_ms=now,
                          lease_ttl_ms=int(self.rt.limits.lease_ttl_s * 1000), in_flight=in_flight,
                          last_pass_ms=last_pass, pid=self.pid, host=self.host, started_ms=self.started_ms)
