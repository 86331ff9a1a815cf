"""The OpenAPI document: valid 3.1, covering every route, and true to the running service — schemathesis
drives every operation of a live instance with an admin key and with another account's operator key."""

from __future__ import annotations

import aiohttp
import anyio
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.api.test_access import snapshot

EXAMPLES_PER_OPERATION = 8
# The dashboard's server-sent event stream answers 200 and then streams until the client leaves: a
# fuzzer's request would wait out its timeout on every example. Only that operation is left out.
NOT_FUZZED = ("GET /events",)


async def _document(api: Api) -> dict:
    async with aiohttp.ClientSession() as http, http.get(api.base + "/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        return await r.json()


async def test_document_is_valid_and_covers_every_route(api: Api) -> None:
    doc = await _document(api)
    validate(doc)  # OpenAPI 3.1 structure and JSON Schema of every component
    assert doc["openapi"] == "3.1.0"
    served = {(r.method, r.resource.canonical) for r in api.api.app.router.routes()
              if r.resource is not None and r.resource.canonical != "/{tail}" and r.method != "HEAD"}
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert served == documented
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    problem = "#/components/schemas/Problem"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            errors = {k: v for k, v in op["responses"].items() if k.startswith(("4", "5"))}
            assert errors and all(v["content"]["application/problem+json"]["schema"]["$ref"] == problem
                                  for v in errors.values()), (method, path)
            if op.get("security") != []:
                assert {"401", "403", "404", "429"} <= set(errors), (method, path)
    # request bodies come from the models that validate them
    topup = doc["paths"]["/accounts/{account_id}/topup"]["post"]["requestBody"]["content"]["application/json"]
    assert topup["schema"]["$ref"].endswith("/TopUpRequest")
    assert doc["components"]["schemas"]["TopUpRequest"]["additionalProperties"] is False
    jobs = {p["name"] for p in doc["paths"]["/jobs"]["get"]["parameters"]}
    assert {"batch_id", "state", "phone", "rut", "outcome", "updated_from_ms", "limit", "cursor"} <= jobs


async def test_docs_page_renders_the_document_without_a_cdn(api: Api) -> None:
    async with aiohttp.ClientSession() as http, http.get(api.base + "/docs") as r:
        assert r.status == 200 and r.content_type == "text/html"
        page = await r.text()
    assert 'fetch("/openapi.json")' in page and "<script src" not in page and "<link" not in page


def run_schemathesis(base: str, token: str, *, paths: tuple[str, ...] = (), response_schemas: bool = True,
                     examples: int = EXAMPLES_PER_OPERATION) -> list[str]:
    """Every operation (of ``paths``' prefixes, if given; but ``NOT_FUZZED``) with generated requests; the
    failures found. ``response_schemas``: also check answers against their documented schema."""
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance]
    if response_schemas:
        checks.append(response_schema_conformance)
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    chosen = [op for op in operations if (not paths or op.path.startswith(paths))
              and f"{op.method.upper()} {op.path}" not in NOT_FUZZED]
    for operation in chosen:

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {token}"}, checks=checks,
                                   timeout=20)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    return failures


def _schemathesis(base: str, token: str) -> list[str]:
    return run_schemathesis(base, token)


async def test_schemathesis_with_another_accounts_operator_and_an_admin_key(api: Api) -> None:
    acme = await snapshot("acme")
    failures = await anyio.to_thread.run_sync(_schemathesis, api.base, api.tokens["beta:operator"])
    assert not failures, "\n\n".join(failures)
    assert await snapshot("acme") == acme  # beta's operator neither read nor changed anything of acme's
    failures = await anyio.to_thread.run_sync(_schemathesis, api.base, ADMIN_TOKEN)
    assert not failures, "\n\n".join(failures)
