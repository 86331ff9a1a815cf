"""The scheduler's in-memory index of waiting jobs: per batch, a heap keyed by next-try time.

Loaded by one pass when a batch appears, kept current by this instance's own claims and releases and by
a periodic resync of what other instances and operators wrote. Entries are never trusted blindly: a
claim re-checks state and time in the database, and a job that fails it is dropped until the next
resync says otherwise. Stale heap entries are skipped lazily (``_at`` holds the live one).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any


class DueIndex:
    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[int, str]]] = {}
        self._at: dict[str, tuple[str, int, Any]] = {}  # job id (text) -> (batch id, next_try_ms, raw id)

    def __len__(self) -> int:
        return len(self._at)

    def put(self, batch_id: str, job_id: Any, next_try_ms: int) -> None:
        key = str(job_id)
        if (current := self._at.get(key)) is not None and current[:2] == (batch_id, next_try_ms):
            return
        self._at[key] = (batch_id, next_try_ms, job_id)
        heapq.heappush(self._heaps.setdefault(batch_id, []), (next_try_ms, key))

    def discard(self, job_id: Any) -> None:
        self._at.pop(str(job_id), None)

    def apply(self, row: dict[str, Any], waiting_states: Iterable[str]) -> None:
        """One job row from the database: indexed while it waits, dropped otherwise."""
        if row.get("state") in waiting_states:
            self.put(row["batch_id"], row["_id"], int(row.get("next_try_ms") or 0))
        else:
            self.discard(row["_id"])

    def _top(self, batch_id: str) -> tuple[int, str] | None:
        heap = self._heaps.get(batch_id)
        while heap:
            at, key = heap[0]
            live = self._at.get(key)
            if live is not None and live[0] == batch_id and live[1] == at:
                return heap[0]
            heapq.heappop(heap)  # superseded by a later put, or discarded
        return None

    def earliest(self, batch_id: str) -> int | None:
        top = self._top(batch_id)
        return None if top is None else top[0]

    def pop_due(self, batch_id: str, now_ms: int) -> Any | None:
        """The raw id of the batch's earliest job due at ``now_ms``, removed from the index."""
        top = self._top(batch_id)
        if top is None or top[0] > now_ms:
            return None
        heapq.heappop(self._heaps[batch_id])
        return self._at.pop(top[1])[2]

    def count(self, batch_id: str) -> int:
        return sum(1 for b, _, _ in self._at.values() if b == batch_id)

    def drop_batch(self, batch_id: str) -> None:
        for key in [k for k, (b, _, _) in self._at.items() if b == batch_id]:
            del self._at[key]
        self._heaps.pop(batch_id, None)

    def batches(self) -> set[str]:
        return {b for b, _, _ in self._at.values()}
