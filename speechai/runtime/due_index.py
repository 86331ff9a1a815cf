"""The scheduler's in-memory index of waiting jobs: per batch, a heap keyed by next-try time.

Loaded by one pass when a batch appears, kept current by this instance's own claims and releases and by
a periodic resync of what other instances and operators wrote. Entries are never trusted blindly: a
claim re-checks state and time in the database, and a job that fails it is dropped until the next
resync says otherwise. Stale heap entries are skipped lazily (``_at`` holds the live one).

Among a batch's jobs that are due, the highest ``priority`` (its segment's) goes first, then the
earliest: due jobs move from the time heap to a ready heap keyed by (-priority, time).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any


class DueIndex:
    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[int, str]]] = {}
        self._ready: dict[str, list[tuple[int, int, str]]] = {}  # due entries: (-priority, next_try_ms, key)
        self._at: dict[str, tuple[str, int, Any, int]] = {}  # job id (text) -> (batch, next_try_ms, raw id, prio)
        # the last priority heard of each job, kept while it is claimed: a release row may not carry it
        self._prio: dict[str, tuple[str, int]] = {}

    def __len__(self) -> int:
        return len(self._at)

    def put(self, batch_id: str, job_id: Any, next_try_ms: int, priority: int | None = None) -> None:
        key = str(job_id)
        known = self._prio.get(key)
        prio = priority if priority is not None else (known[1] if known and known[0] == batch_id else 0)
        self._prio[key] = (batch_id, prio)
        if (current := self._at.get(key)) is not None and current[:2] == (batch_id, next_try_ms) \
                and current[3] == prio:
            return
        self._at[key] = (batch_id, next_try_ms, job_id, prio)
        heapq.heappush(self._heaps.setdefault(batch_id, []), (next_try_ms, key))

    def discard(self, job_id: Any) -> None:
        self._at.pop(str(job_id), None)

    def apply(self, row: dict[str, Any], waiting_states: Iterable[str]) -> None:
        """One job row from the database: indexed while it waits, dropped otherwise."""
        if row.get("state") in waiting_states:
            prio = row.get("priority")
            self.put(row["batch_id"], row["_id"], int(row.get("next_try_ms") or 0),
                     int(prio) if isinstance(prio, int) else None)
        else:
            self.discard(row["_id"])

    def _live(self, batch_id: str, key: str, at: int) -> tuple[str, int, Any, int] | None:
        live = self._at.get(key)
        return live if live is not None and live[0] == batch_id and live[1] == at else None

    def _top(self, batch_id: str) -> tuple[int, str] | None:
        heap = self._heaps.get(batch_id)
        while heap:
            at, key = heap[0]
            if self._live(batch_id, key, at) is not None:
                return heap[0]
            heapq.heappop(heap)  # superseded by a later put, or discarded
        return None

    def _top_ready(self, batch_id: str) -> tuple[int, int, str] | None:
        ready = self._ready.get(batch_id)
        while ready:
            neg, at, key = ready[0]
            live = self._live(batch_id, key, at)
            if live is not None and live[3] == -neg:
                return ready[0]
            heapq.heappop(ready)  # moved, re-prioritised or discarded since it became due
        return None

    def _promote(self, batch_id: str, now_ms: int) -> None:
        """Every entry due at ``now_ms`` into the ready heap."""
        while (top := self._top(batch_id)) is not None and top[0] <= now_ms:
            at, key = heapq.heappop(self._heaps[batch_id])
            heapq.heappush(self._ready.setdefault(batch_id, []), (-self._at[key][3], at, key))

    def earliest(self, batch_id: str) -> int | None:
        """The earliest next-try time of the batch's jobs (a ready job's time: it is due already)."""
        ready, top = self._top_ready(batch_id), self._top(batch_id)
        times = [t[1] for t in (ready,) if t is not None] + [t[0] for t in (top,) if t is not None]
        return min(times) if times else None

    def pop_due(self, batch_id: str, now_ms: int) -> Any | None:
        """The raw id of the batch's due job of highest priority (earliest first within one), removed."""
        self._promote(batch_id, now_ms)
        top = self._top_ready(batch_id)
        if top is None:
            return None
        heapq.heappop(self._ready[batch_id])
        return self._at.pop(top[2])[2]

    def due_at_least(self, batch_id: str, now_ms: int, n: int) -> bool:
        """Whether at least ``n`` of the batch's jobs are due at ``now_ms`` (looks at no more than needed)."""
        self._promote(batch_id, now_ms)
        found = 0
        for neg, at, key in self._ready.get(batch_id, ()):
            live = self._live(batch_id, key, at)
            if live is not None and live[3] == -neg:
                found += 1
                if found >= n:
                    return True
        return n <= 0

    def count(self, batch_id: str) -> int:
        return sum(1 for b, *_ in self._at.values() if b == batch_id)

    def drop_batch(self, batch_id: str) -> None:
        for key in [k for k, (b, *_) in self._at.items() if b == batch_id]:
            del self._at[key]
        for key in [k for k, (b, _) in self._prio.items() if b == batch_id]:
            del self._prio[key]
        self._heaps.pop(batch_id, None)
        self._ready.pop(batch_id, None)

    def batches(self) -> set[str]:
        return {b for b, *_ in self._at.values()}
