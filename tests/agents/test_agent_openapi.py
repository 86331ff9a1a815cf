"""The agents' routes in the live OpenAPI document, driven by schemathesis with an agent's, another account's
and an instance admin's keys: never a server error, answers as documented."""

from __future__ import annotations

import aiohttp
import anyio

from tests.agents.conftest import AgentsApi
from tests.api.conftest import ADMIN_TOKEN
from tests.api.test_openapi import run_schemathesis

EXAMPLES_PER_OPERATION = 40
OURS = ("/agents", "/agent-calls", "/people/")


def _schemathesis(base: str, token: str) -> list[str]:
    """Every operation of the agents' routes with generated requests, answers checked against their
    documented schemas; the failures found (none expected)."""
    return run_schemathesis(base, token, paths=OURS, response_schemas=True, examples=EXAMPLES_PER_OPERATION)


async def test_schemathesis_on_the_agents_routes(agents_api: AgentsApi) -> None:
    api = agents_api
    await api.start("ana", "+56987654321")  # something to list, end and merge into a history
    async with aiohttp.ClientSession() as http, http.get(api.base + "/openapi.json") as r:
        document = await r.json()
    ours = [(m, p) for p, ops in document["paths"].items() if p.startswith(OURS) for m in ops]
    assert len(ours) == 7, ours  # every agents' route is documented, so schemathesis reaches it
    for token in (api.tokens["ana"], api.tokens["bea"], ADMIN_TOKEN):
        failures = await anyio.to_thread.run_sync(_schemathesis, api.base, token)
        assert not failures, "\n\n".join(failures)
