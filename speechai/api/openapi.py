"""The OpenAPI 3.1 document, built from the routes' own pydantic models, and the ``/docs`` page.

Each route is an :class:`Op`: its handler, its access (``speechai.api.auth``) and the models that
validate its query and body and shape its answer. The document is generated from those models
(``model_json_schema`` through ``models_json_schema``); nothing in it is written by hand but the
summaries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from speechai.api.auth import Access, access_of
from speechai.api.problems import PROBLEM_CONTENT_TYPE, Problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
F = TypeVar("F", bound=Callable[..., Any])
_DOC_ATTR = "__speechai_doc__"
REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?}")
# Every operation can answer these (guard, size and body checks, overload, a database outage).
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
COMMON_ERRORS = (400, 413, 417, 503)
KEYED_ERRORS = (401, 403, 404, 429)
ERROR_TEXT = {400: "Bad request (body or parameter not usable)", 401: "No valid API key",
              403: "The key's role may not do this", 404: "Not found (or another account's)",
              409: "Conflicts with the current state", 413: "Body larger than this route's limit",
              417: "Unsupported Expect header", 422: "Invalid field(s): detail and problems name them",
              429: "Rate limit of this key: wait Retry-After seconds", 503: "Overloaded or database unavailable"}


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    ok: type[BaseModel] | None = None
    ok_status: int = 200
    query: type[BaseModel] | None = None
    body: type[BaseModel] | dict[str, Any] | None = None  # a model, or a schema derived from one
    body_content: str = "application/json"
    partial_body: type[BaseModel] | None = None  # body: any subset of this model's keys (a merge patch)
    errors: tuple[int, ...] = ()
    path_params: type[BaseModel] | None = None  # the path parameters' schemas (else bounded strings)
    ok_content: str = "application/json"  # a success that is not JSON: text/plain, a download
    ok_schema: dict[str, Any] | None = None  # its schema when ``ok`` is no model (non-JSON content)
    other_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # content type -> schema
    # other answers: status -> (description, model or None for any JSON object[, content type])
    more: dict[int, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def access(self) -> Access:
        return access_of(self.handler)

    def route(self) -> web.RouteDef:
        return web.route(self.method, self.path, self.handler)


@dataclass(frozen=True)
class Doc:
    """What a route of another module declares about itself (:func:`documented`); every field optional."""

    summary: str | None = None
    tag: str | None = None
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    body: type[BaseModel] | dict[str, Any] | None = None
    body_content: str = "application/json"
    other_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    ok: type[BaseModel] | None = None
    ok_status: int = 200
    ok_content: str = "application/json"
    ok_schema: dict[str, Any] | None = None
    errors: tuple[int, ...] = ()
    more: dict[int, tuple[Any, ...]] = field(default_factory=dict)


def documented(**fields: Any) -> Callable[[F], F]:
    """Declare a handler's models (the fields of :class:`Doc`) where it is defined, next to the code that
    validates with them; :func:`extra_op` documents the route from them."""
    doc = Doc(**fields)

    def mark(handler: F) -> F:
        setattr(handler, _DOC_ATTR, doc)
        return handler

    return mark


def doc_of(handler: Any) -> Doc | None:
    found = getattr(handler, _DOC_ATTR, None)
    return found if isinstance(found, Doc) else None


def extra_op(route: web.RouteDef, **overrides: Any) -> Op:
    """An operation for a route another module passes in: documented from what its handler declares
    (:func:`documented`, or ``overrides``: the same fields), else from its docstring alone."""
    declared = doc_of(route.handler)
    if declared is not None or overrides:
        d = replace(declared or Doc(), **overrides)
        lines = (route.handler.__doc__ or "").strip().splitlines()
        summary = d.summary or (lines[0] if lines else f"{route.method} {route.path}")
        return Op(route.method, route.path, route.handler, summary, d.tag or "extra", ok=d.ok,
                  ok_status=d.ok_status, query=d.query, body=d.body, body_content=d.body_content,
                  errors=d.errors, more=dict(d.more), path_params=d.path, ok_content=d.ok_content,
                  ok_schema=d.ok_schema, other_bodies=dict(d.other_bodies))
    doc = (route.handler.__doc__ or "").strip().splitlines()
    summary = doc[0] if doc else f"{route.method} {route.path}"
    body: dict[str, Any] | None = None
    content = "application/json"
    if route.method in ("POST", "PUT", "PATCH"):
        content = "multipart/form-data" if "upload" in route.path else "application/json"
        body = {"type": "object"}
    return Op(route.method, route.path, route.handler, summary, "extra", body=body, body_content=content,
              errors=(422,), more={200: ("Success (the route's own format)", None, None)})


def _ref(keys: dict[Any, Any], model: type[BaseModel], mode: str) -> dict[str, Any]:
    return dict(keys[(model, mode)])


def build_document(ops: Iterable[Op], *, title: str, version: str) -> dict[str, Any]:
    ops = list(ops)
    wanted: list[tuple[type[BaseModel], str]] = [(Problem, "serialization")]
    for op in ops:
        if op.ok is not None:
            wanted.append((op.ok, "serialization"))
        wanted += [(m[1], "serialization") for m in op.more.values() if m[1] is not None]
        if op.query is not None:
            wanted.append((op.query, "validation"))
        if op.path_params is not None:
            wanted.append((op.path_params, "validation"))
        if isinstance(op.body, type):
            wanted.append((op.body, "validation"))
        if op.partial_body is not None:
            wanted.append((op.partial_body, "validation"))
    keys, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    components: dict[str, Any] = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        if op.method.lower() not in _METHODS:
            continue  # e.g. a catch-all "*" route: not an operation
        paths.setdefault(_PATH_PARAM.sub(r"{\1}", op.path), {})[op.method.lower()] = _operation(op, keys, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Control API of the SpeechAI runtime. Errors are RFC 9457 problem details."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "an API key `key_….<secret>` or the "
                                                                     "instance's control token (admin)"}}},
        "security": [{"bearer": []}],
    }


def _content(schema: dict[str, Any], content_type: str = "application/json") -> dict[str, Any]:
    return {content_type: {"schema": schema}}


def _operation(op: Op, keys: dict[Any, Any], components: dict[str, Any]) -> dict[str, Any]:
    access = op.access
    roles = "public (no key)" if access.public else ", ".join(["admin", *sorted(r.value for r in access.roles)]) \
        if access.account_from is not None else "admin"
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', op.path).strip('_') or 'root'}",
        "summary": op.summary, "tags": [op.tag],
        "description": f"{(op.handler.__doc__ or op.summary).strip()}\n\nRoles: {roles}.",
    }
    if access.public:
        out["security"] = []
    declared: dict[str, Any] = {}
    if op.path_params is not None:
        declared = components[_ref(keys, op.path_params, "validation")["$ref"].rsplit("/", 1)[1]].get("properties", {})
    params = [{"name": name, "in": "path", "required": True,
               "schema": declared.get(name, {"type": "string", "minLength": 1, "maxLength": 256})}
              for name in _PATH_PARAM.findall(op.path)]
    if op.query is not None:
        ref = _ref(keys, op.query, "validation")["$ref"].rsplit("/", 1)[1]
        schema = components[ref]
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop,
                           **({"description": prop["description"]} if "description" in prop else {})})
    if params:
        out["parameters"] = params
    if op.partial_body is not None:
        name = _ref(keys, op.partial_body, "validation")["$ref"].rsplit("/", 1)[1]
        props = {k: {"anyOf": [v, {"type": "null"}]} for k, v in components[name].get("properties", {}).items()}
        out["requestBody"] = {"required": True, "content": _content({
            "type": "object", "properties": props, "additionalProperties": False,
            "description": f"JSON merge-patch of {name}: keys left out keep their value"})}
    elif op.body is not None:
        schema = _ref(keys, op.body, "validation") if isinstance(op.body, type) else op.body
        content = _content(schema, op.body_content)
        for kind, other in op.other_bodies.items():
            content.update(_content(other, kind))
        out["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    if op.ok is not None:
        responses[str(op.ok_status)] = {"description": "Success",
                                        "content": _content(_ref(keys, op.ok, "serialization"), op.ok_content)}
    elif op.ok_schema is not None:
        responses[str(op.ok_status)] = {"description": "Success", "content": _content(op.ok_schema, op.ok_content)}
    for status, (text, model, *kind) in op.more.items():
        content_type = kind[0] if kind else "application/json"
        if content_type is None:  # a format this document does not describe
            responses[str(status)] = {"description": text}
            continue
        schema = _ref(keys, model, "serialization") if model else (
            {"type": "object"} if content_type == "application/json" else {"type": "string"})
        responses[str(status)] = {"description": text, "content": _content(schema, content_type)}
    problem = _content(_ref(keys, Problem, "serialization"), PROBLEM_CONTENT_TYPE)
    errors = {*COMMON_ERRORS, *op.errors, *(() if access.public else KEYED_ERRORS)}
    if op.body is not None or op.partial_body is not None or op.query is not None:
        errors.add(422)
    for status in sorted(errors):
        responses.setdefault(str(status), {"description": ERROR_TEXT.get(status, "Error"), "content": problem})
    out["responses"] = responses
    return out


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SpeechAI control API</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:960px;padding:0 1rem;color:#222}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
.op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.2rem;font-weight:700;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.put,.patch{color:#a60}.delete{color:#c22}
code,pre{font:12px/1.4 ui-monospace,monospace;background:#f6f6f6}
pre{padding:.5rem;overflow:auto;max-height:20rem} summary{cursor:pointer}
</style></head><body>
<h1>SpeechAI control API</h1>
<p>Generated from <a href="/openapi.json">/openapi.json</a>. Send <code>Authorization: Bearer &lt;key&gt;</code>.
Errors are <a href="https://www.rfc-editor.org/rfc/rfc9457">RFC 9457</a> problem details.</p>
<div id="ops">Loading…</div>
<script>
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"})[c]);
const show = v => "<pre>" + esc(JSON.stringify(v, null, 2)) + "</pre>";
fetch("/openapi.json").then(r => r.json()).then(doc => {
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(item)) (byTag[op.tags[0]] ||= []).push([path, method, op]);
  let html = "";
  for (const [tag, ops] of Object.entries(byTag)) {
    html += "<h2>" + esc(tag) + "</h2>";
    for (const [path, method, op] of ops) {
      html += '<div class="op"><span class="m ' + method + '">' + method + "</span><code>" + esc(path) +
        "</code> — " + esc(op.summary) + "<details><summary>details</summary><p>" +
        esc(op.description).replace(/\\n/g, "<br>") + "</p>";
      if (op.parameters) html += "<b>Parameters</b>" + show(op.parameters);
      if (op.requestBody) html += "<b>Body</b>" + show(op.requestBody.content);
      html += "<b>Responses</b>" + show(Object.fromEntries(Object.entries(op.responses).map(
        ([k, v]) => [k, v.description + " " + JSON.stringify(Object.values(v.content || {})[0]?.schema || {})])));
      html += "</details></div>";
    }
  }
  html += "<h2>Schemas</h2>" + show(doc.components.schemas);
  document.getElementById("ops").innerHTML = html;
}).catch(e => { document.getElementById("ops").textContent = "cannot load /openapi.json: " + e; });
</script></body></html>
"""


def docs_response() -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


def document_response(doc: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(doc), content_type="application/json")
