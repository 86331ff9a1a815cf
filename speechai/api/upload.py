"""``POST /batches/upload``: the same loader behind the control API (multipart file + call settings).

Fields: ``file`` (.xlsx/.csv), ``account``, ``batch_id``, optional ``format``, ``name``, ``sheet``,
``agent_id``, ``from_number``, ``call_settings`` (JSON), ``segments`` (JSON list of segment rules,
docs/segments.md), ``options`` (JSON: any other ``BatchSource``
key such as ``accept_partial`` or ``columns``, and the batch's dialing fields ``use_case``, ``caller_ids``,
``caller_id_daily_cap``: a batch breaking the Chile caller-ID rule is refused with 422). Answers 200 with
the load summary; 422 with the summary when rows were rejected; 400/413/422 with ``{"error": ...}`` for
a request or file that cannot load (413 also for a file over one of the loader's size limits, e.g. a
workbook that inflates too much).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, Field, Json, TypeAdapter, ValidationError

from actors.clock import Clock
from speechai.api.audit import note
from speechai.api.auth import ensure_account, requires
from speechai.api.openapi import documented
from speechai.api.schemas import LoadOut
from speechai.dialing.limits import batch_errors
from speechai.domain.settings import CallSettings, merge_settings
from speechai.loader.errors import LimitError, LoadError, MissingColumnsError, UnreadableFileError
from speechai.loader.service import BatchDialing, load_batch
from speechai.loader.spec import BatchSource
from speechai.store.api_models import Role
from speechai.store.models import CallerId

MAX_UPLOAD_BYTES = 100 * 2**20
MAX_FIELD_BYTES = 64 * 2**10  # a settings or text field; the file part has its own limit
SUFFIXES = (".xlsx", ".csv")
_TEXT_FIELDS = ("account", "batch_id", "format", "name", "sheet", "agent_id", "from_number")
_JSON_FIELDS = ("call_settings", "options", "segments")  # segments: a JSON list
_DIALING_OPTIONS = ("use_case", "caller_ids", "caller_id_daily_cap")
_POOL = TypeAdapter(list[CallerId])


class UploadFields(BaseModel):
    """The form's text fields (the JSON ones are read apart: a JSON error is a 400 naming the field)."""

    model_config = ConfigDict(extra="forbid")

    account: str = Field(min_length=1, max_length=256, description="the account the batch belongs to")
    batch_id: str = Field(min_length=1, max_length=256)
    format: str | None = Field(None, min_length=1, max_length=100, description="a use-case format name")
    name: str | None = Field(None, min_length=1, max_length=500)
    sheet: str | None = Field(None, min_length=1, max_length=500, description="the workbook's sheet to read")
    agent_id: str | None = Field(None, min_length=1, max_length=200)
    from_number: str | None = Field(None, min_length=1, max_length=40)


class UploadForm(UploadFields):
    """``multipart/form-data``: the file and the batch's settings."""

    file: bytes = Field(description=f"the spreadsheet ({', '.join(SUFFIXES)}; the part's filename names the "
                                    f"type), at most {MAX_UPLOAD_BYTES // 2**20} MiB")
    call_settings: Json[dict[str, Any]] | None = Field(None, description="JSON object: the batch's call settings")
    options: Json[dict[str, Any]] | None = Field(
        None, description="JSON object: other BatchSource keys (accept_partial, columns …) and use_case, "
                          "caller_ids, caller_id_daily_cap")
    segments: Json[list[dict[str, Any]]] | None = Field(None, description="JSON list of segment rules")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _validation_message(exc: ValidationError) -> str:
    def value(e: Any) -> str:
        return "" if e["type"] == "extra_forbidden" or "input" not in e else f" = {e['input']!r}"

    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}{value(e)}: {e['msg']}" for e in exc.errors())


async def _receive(request: web.Request, tmp: Path) -> tuple[dict[str, Any], Path | None] | web.Response:
    fields: dict[str, Any] = {}
    saved: Path | None = None
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        return _error(400, "expected a multipart/form-data body with a 'file' part")
    while True:
        try:
            part = await reader.next()
        except ValueError as exc:  # no boundary where the header said, a malformed part header
            return _error(400, f"malformed multipart/form-data body: {exc}")
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue  # a nested multipart: not something this form sends
        name = part.name or ""
        if name == "file":
            filename = Path(part.filename or "upload").name
            suffix = Path(filename).suffix.lower()
            if suffix not in SUFFIXES:
                return _error(400, f"unsupported file type {suffix or '(none)'} for {filename!r}; "
                                   f"upload one of {', '.join(SUFFIXES)}")
            saved = tmp / (re.sub(r"[^\w.-]", "_", Path(filename).stem) + suffix)
            size = 0
            with saved.open("wb") as f:
                while chunk := await part.read_chunk(1 << 16):
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        return _error(413, f"file larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
                    f.write(chunk)
        elif name in _TEXT_FIELDS or name in _JSON_FIELDS:
            raw = b""
            while chunk := await part.read_chunk(1 << 16):  # capped: a chunked body declares no length
                raw += chunk
                if len(raw) > MAX_FIELD_BYTES:
                    return _error(413, f"field {name!r} is larger than {MAX_FIELD_BYTES // 2**10} KiB")
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                return _error(400, f"field {name!r} is not UTF-8 text: {exc}")
            if name in _JSON_FIELDS:
                try:
                    value = json.loads(text) if text else ([] if name == "segments" else {})
                except json.JSONDecodeError as exc:
                    return _error(400, f"field {name!r} is not valid JSON: {exc}")
                except RecursionError:
                    return _error(400, f"field {name!r} is JSON nested too deeply")
                if not isinstance(value, list if name == "segments" else dict):
                    return _error(400, f"field {name!r} must be a JSON {'list' if name == 'segments' else 'object'}")
                fields[name] = value
            elif text:
                fields[name] = text
        else:
            # A misspelt field would otherwise be dropped and the batch loaded without it.
            allowed = ", ".join(("file", *_TEXT_FIELDS, *_JSON_FIELDS))
            return _error(400, f"unknown form field {name!r}; the form takes: {allowed}")
    return fields, saved


def _dialing(options: dict[str, Any]) -> BatchDialing:
    """The batch's dialing fields out of ``options``, checked with the bounds of docs/dialing.md."""
    raw = {k: options.pop(k) for k in _DIALING_OPTIONS if k in options}
    try:
        pool = _POOL.validate_python(raw.get("caller_ids") or [])
    except ValidationError as exc:
        raise ValueError(f"caller_ids: {_validation_message(exc)}") from None
    dialing = BatchDialing(use_case=raw.get("use_case"), caller_ids=tuple(pool),
                           caller_id_daily_cap=raw.get("caller_id_daily_cap"))
    errors = batch_errors(SimpleNamespace(use_case=dialing.use_case, caller_ids=pool, agent_split=[],
                                          caller_id_daily_cap=dialing.caller_id_daily_cap))
    if errors:
        raise ValueError("; ".join(errors))
    return dialing


def upload_routes(*, clock: Clock, report_dir: Path, default_settings: CallSettings | None = None,
                  default_from_number: str | None = None) -> list[web.RouteDef]:
    """``default_settings`` (the config's ``[call_settings]``): the upload's call settings override them.
    ``default_from_number`` (``retell.from_number``): what a batch without a number of its own calls from."""
    @documented(tag="batches", body=UploadForm, body_content="multipart/form-data", ok=LoadOut,
                summary="Load a batch from a spreadsheet (.xlsx/.csv)")
    @requires(Role.OPERATOR, account_from="handler")
    async def upload(request: web.Request) -> web.Response:
        """Load a batch from a spreadsheet: 200 with the load summary; 422 with the summary when rows were
        rejected (nothing loaded)."""
        with tempfile.TemporaryDirectory(prefix="speechai-upload-") as tmp_dir:
            received = await _receive(request, Path(tmp_dir))
            if isinstance(received, web.Response):
                return received
            fields, saved = received
            if saved is None:
                return _error(400, "missing the 'file' part (.xlsx or .csv)")
            missing = [k for k in ("account", "batch_id") if k not in fields]
            if missing:
                return _error(400, f"missing field(s): {', '.join(missing)}")
            # an operator key uploads into its own account only; another account looks like none
            ensure_account(request, fields["account"], f"no account {fields['account']!r}")
            try:
                UploadFields.model_validate({k: fields[k] for k in _TEXT_FIELDS if k in fields})
            except ValidationError as exc:
                return _error(422, f"invalid form field(s): {_validation_message(exc)}")
            options = fields.pop("options", {})
            try:
                dialing = _dialing(options)
            except ValueError as exc:
                return _error(422, f"invalid batch settings: {exc}")
            unknown = set(options) & {"file", *_TEXT_FIELDS, "call_settings"}
            if unknown:
                return _error(400, f"'options' cannot set {', '.join(sorted(unknown))}")
            if default_settings is not None:
                given = fields.get("call_settings")
                fields["call_settings"] = merge_settings(default_settings.model_dump(mode="json"),
                                                         given if isinstance(given, dict) else {})
            try:
                source = BatchSource.model_validate({**options, **fields, "file": saved})
            except ValidationError as exc:
                return _error(422, f"invalid batch settings: {_validation_message(exc)}")
            try:
                summary = await load_batch(source, now=clock.now(), report_dir=report_dir, dialing=dialing,
                                           default_from_number=default_from_number)
            except MissingColumnsError as exc:
                return _error(422, str(exc), missing=exc.missing, found=exc.found)
            except LimitError as exc:
                return _error(413, str(exc))
            except UnreadableFileError as exc:
                return _error(400, str(exc))
            except LoadError as exc:
                return _error(422, str(exc))
        body = summary.to_dict()
        if not summary.ok:
            body["error"] = f"{body['rejected_rows']} row(s) rejected; nothing was loaded"
            return web.json_response(body, status=422)
        # the account's GET /audit lists the load, naming the batch
        note(request, "batch.upload", source.account, source.batch_id,
             after={k: body[k] for k in ("rows", "people", "jobs_created", "rejected_rows")}, format=body["format"])
        return web.json_response(LoadOut.model_validate(body).model_dump(mode="json"))

    return [web.post("/batches/upload", upload)]
