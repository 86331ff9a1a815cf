"""The document describes every operation the production endpoint serves: each path parameter, each
query the route reads, each body with the model that validates it, and the success's schema."""

from __future__ import annotations

import aiohttp

from tests.api.conftest import Api

WRITES = ("post", "put", "patch")
# Free-form on purpose: the OpenAPI document itself; Retell's signed event (the provider's shape,
# verified by its signature before it is read).
FREE_FORM = {("get", "/openapi.json"), ("post", "/webhooks/retell")}
# Test routes of the fixture, not production's: one declares nothing on purpose (the fallback).
TEST_ONLY = ("/extra/",)
UNDECLARED_MODULES: set[tuple[str, str]] = set()  # every module declares its routes
# Write routes that take no body (their path says all).
NO_BODY = {("post", "/webhooks/deliveries/{delivery_id}/replay"), ("post", "/batches/{batch_id}/pause"),
           ("post", "/batches/{batch_id}/resume"), ("post", "/batches/{batch_id}/cancel")}


def _bare(schema: dict) -> bool:
    return schema in ({"type": "object"}, {}, {"type": "string"})


async def test_every_production_operation_documents_its_request_and_its_answer(api: Api) -> None:
    async with aiohttp.ClientSession() as http, http.get(api.base + "/openapi.json") as r:
        doc = await r.json()
    schemas = doc["components"]["schemas"]
    gaps: list[str] = []
    checked = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            if path.startswith(TEST_ONLY) or (method, path) in UNDECLARED_MODULES:
                continue
            checked += 1
            params = {(p["in"], p["name"]) for p in op.get("parameters", [])}
            for name in (seg[1:-1] for seg in path.split("/") if seg.startswith("{")):
                if ("path", name) not in params:
                    gaps.append(f"{where}: path parameter {name} undocumented")
            body = op.get("requestBody")
            if method in WRITES and body is None and (method, path) not in NO_BODY:
                gaps.append(f"{where}: no request body")
            for kind, content in (body or {}).get("content", {}).items():
                if kind in ("application/json", "multipart/form-data") and _bare(content["schema"]) \
                        and (method, path) not in FREE_FORM:
                    gaps.append(f"{where}: bare {kind} body")
                ref = content["schema"].get("$ref", "")
                if kind == "multipart/form-data" and not schemas[ref.rsplit("/", 1)[-1]].get("properties"):
                    gaps.append(f"{where}: form fields undocumented")
            ok = {k: v for k, v in op["responses"].items() if k.startswith("2")}
            if not ok:
                gaps.append(f"{where}: no success answer")
            for status, answer in ok.items():
                content = answer.get("content")
                if not content:
                    gaps.append(f"{where}: {status} without content")
                    continue
                for kind, media in content.items():
                    if (method, path) not in FREE_FORM and kind == "application/json" and _bare(media["schema"]):
                        gaps.append(f"{where}: {status} answer is a bare object")
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in answer["content"], where
    assert not gaps, "\n".join(gaps)
    assert checked >= 58  # every production operation


async def test_the_extra_routes_are_documented_from_their_models(api: Api) -> None:
    async with aiohttp.ClientSession() as http, http.get(api.base + "/openapi.json") as r:
        doc = await r.json()
    paths = doc["paths"]

    def body_ref(path: str, method: str, kind: str = "application/json") -> str:
        return paths[path][method]["requestBody"]["content"][kind]["schema"]["$ref"].rsplit("/", 1)[1]

    def ok_ref(path: str, method: str, status: str = "200") -> str:
        return paths[path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"] \
            .rsplit("/", 1)[1]

    def query(path: str) -> set[str]:
        return {p["name"] for p in paths[path]["get"]["parameters"] if p["in"] == "query"}

    assert body_ref("/crm/contacts", "post") == "ContactCreate"
    assert ok_ref("/crm/contacts", "post", "201") == "ContactOut"
    assert {"subscription_id", "state", "limit", "cursor"} <= query("/webhooks/deliveries")
    assert {"contact_id", "limit", "cursor"} <= query("/crm/opportunities")
    assert {"batch", "account", "from", "to"} == query("/reports/summary") == query("/reports/summary.xlsx")
    assert {"user_id", "status", "from", "to", "tz", "limit", "cursor", "account_id"} == query("/agent-calls")
    xlsx = paths["/reports/summary.xlsx"]["get"]["responses"]["200"]["content"]
    assert list(xlsx) == ["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"]
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    form = doc["components"]["schemas"][body_ref("/batches/upload", "post", "multipart/form-data")]
    assert {"file", "account", "batch_id", "call_settings"} <= set(form["properties"])
    assert form["properties"]["file"]["format"] == "binary" and {"file", "account", "batch_id"} <= set(form["required"])
    paid = paths["/accounts/{account_id}/paid"]["post"]["requestBody"]["content"]
    assert set(paid) == {"application/json", "text/csv"}
    arm = doc["components"]["schemas"]["AgentArmIn"]["properties"]["weight"]
    assert arm["maximum"] == 1_000_000
    assert body_ref("/batches/{batch_id}/segments", "put") == "SegmentsRequest"
    assert "SegmentRule" in doc["components"]["schemas"]
