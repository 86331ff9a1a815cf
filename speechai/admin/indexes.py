"""``speechai db indexes``: the indexes each document declares, created if missing and verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from beanie import Document

from speechai.store.models import DOCUMENT_MODELS


@dataclass(frozen=True)
class IndexRow:
    collection: str
    name: str
    keys: str
    unique: bool
    declared: bool
    present: bool
    created: bool = False  # missing before this check, created by it


def _keys(spec: Any) -> tuple[tuple[str, int], ...]:
    return tuple((str(k), int(v)) for k, v in spec)


def _text(keys: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{k} {'asc' if v == 1 else 'desc' if v == -1 else v}" for k, v in keys)


async def check_indexes(models: list[type[Document]] | None = None) -> list[IndexRow]:
    """Create every declared index (create_index is a no-op for one that exists) and list each
    collection's indexes, declared or not; ``present`` false means the server did not keep one."""
    rows: list[IndexRow] = []
    for model in models or DOCUMENT_MODELS:
        coll = model.get_pymongo_collection()
        declared = list(getattr(model.Settings, "indexes", []) or [])
        before = {_keys(v["key"]) for v in (await coll.index_information()).values()}
        for index in declared:
            await coll.create_indexes([index])
        info = await coll.index_information()
        by_keys = {_keys(v["key"]): (name, bool(v.get("unique"))) for name, v in info.items()}
        wanted = {_keys(ix.document["key"].items()): bool(ix.document.get("unique")) for ix in declared}
        for keys, unique in wanted.items():
            found = by_keys.get(keys)
            rows.append(IndexRow(coll.name, found[0] if found else "(missing)", _text(keys), unique, True,
                                 found is not None and found[1] == unique,
                                 created=found is not None and keys not in before))
        rows += [IndexRow(coll.name, name, _text(keys), unique, False, True)
                 for keys, (name, unique) in sorted(by_keys.items(), key=lambda kv: kv[1][0]) if keys not in wanted]
    return rows
