"""Reads of single documents by ``_id`` for request handlers, fresh from the database on every call.

The embedded server runs one command at a time: under load, requests each reading their API key or
their job queue up behind one another. Here the reads of a collection go out one query at a time, and
every read asked for while one is under way shares the next ``_id $in`` query. Each caller still gets
a read that began after it asked (nothing is cached: a key revoked a moment ago is seen revoked).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from beanie import Document

from actors.batcher import Batcher
from speechai.store.models import BULK_MAX

D = TypeVar("D", bound=Document)


class PointReads(Generic[D]):
    def __init__(self, model: type[D]) -> None:
        self.model = model
        self._reads: Batcher[Any, dict[str, Any] | None] = Batcher(self._read, max_items=BULK_MAX, serial=True)

    @property
    def queries(self) -> int:
        """Queries sent so far (what a caller can count)."""
        return self._reads.flushes

    async def _read(self, ids: list[Any]) -> list[dict[str, Any] | None]:
        coll = self.model.get_pymongo_collection()
        wanted = list(dict.fromkeys(ids))
        query = {"_id": wanted[0]} if len(wanted) == 1 else {"_id": {"$in": wanted}}
        found = {raw["_id"]: raw async for raw in coll.find(query)}
        return [found.get(i) for i in ids]

    async def get(self, doc_id: Any) -> D | None:
        raw = await self._reads.submit(doc_id)
        return None if raw is None else self.model.model_validate(raw)
