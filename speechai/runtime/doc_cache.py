"""Short-lived in-process copies of batch and account documents, so a dial does not re-read them.

Entries expire after ``ttl_s`` real seconds (changes by other instances apply within that); this
instance's own writes and operator actions through its control endpoint clear them at once."""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

import anyio
from beanie import Document

D = TypeVar("D", bound=Document)


class DocCache(Generic[D]):
    def __init__(self, model: type[D], ttl_s: float = 1.0) -> None:
        self.model = model
        self.ttl_s = ttl_s
        self._docs: dict[Any, tuple[float, D | None]] = {}
        self._reading: dict[Any, anyio.Event] = {}
        self.reads = 0  # documents read from the database on a miss (what a caller can count)

    async def get(self, doc_id: Any) -> D | None:
        hit = self._docs.get(doc_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        if (pending := self._reading.get(doc_id)) is not None:  # one read for every caller of the moment
            await pending.wait()
            if (hit := self._docs.get(doc_id)) is not None:
                return hit[1]
        self._reading[doc_id] = event = anyio.Event()
        try:
            self.reads += 1
            doc = await self.model.get(doc_id)
            self._docs[doc_id] = (time.monotonic(), doc)
        finally:
            del self._reading[doc_id]
            event.set()
        return doc

    def peek(self, doc_id: Any, max_age_s: float) -> tuple[bool, D | None]:
        """(True, the document) while a copy is at most ``max_age_s`` old, else (False, None): never a
        read."""
        hit = self._docs.get(doc_id)
        if hit is not None and time.monotonic() - hit[0] < max_age_s:
            return True, hit[1]
        return False, None

    def put(self, doc_id: Any, doc: D | None) -> None:
        self._docs[doc_id] = (time.monotonic(), doc)

    def forget(self, doc_id: Any = None) -> None:
        if doc_id is None:
            self._docs.clear()
        else:
            self._docs.pop(doc_id, None)
