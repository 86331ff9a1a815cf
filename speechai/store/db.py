"""Connect PyMongo's AsyncMongoClient and initialise Beanie with the runtime's documents."""

from __future__ import annotations

from beanie import init_beanie
from pymongo import AsyncMongoClient

from speechai.store.models import DOCUMENT_MODELS


async def connect(uri: str, database: str, *, timeout_ms: int = 5000) -> AsyncMongoClient:
    # tz_aware: dates come back as aware UTC datetimes, matching what the clock produces.
    client: AsyncMongoClient = AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms)
    await init_beanie(database=client[database], document_models=DOCUMENT_MODELS)
    return client
