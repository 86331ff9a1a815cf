"""One scripted campaign per module, its database kept for every report test of the module."""

from __future__ import annotations

import uuid

import pytest
from beanie import init_beanie

from speechai.store.db import connect
from speechai.store.models import DOCUMENT_MODELS
from tests.reports.campaign import run_scripted_campaign


@pytest.fixture(scope="module")
async def campaign_db(mongo_uri, tmp_path_factory):
    name = f"t_{uuid.uuid4().hex[:12]}"
    client = await connect(mongo_uri, name)
    try:
        await run_scripted_campaign(client[name], mongo_uri, tmp_path_factory.mktemp("campaign"))
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
async def report_db(campaign_db):
    """The campaign's database with Beanie pointed at it (other tests re-point it at theirs)."""
    await init_beanie(database=campaign_db, document_models=DOCUMENT_MODELS)
    return campaign_db
