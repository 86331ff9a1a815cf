"""Load a batch: read and validate the file, then write its people as jobs, all or nothing.

Writing protocol (survives an error, a cancellation or a kill -9):
1. the batch document is put in ``LOADING`` with a marker naming this load (its ``load_id``, and the
   status to return to when an existing batch is being reloaded); the scheduler ignores loading batches;
2. jobs are inserted in unordered chunks, each carrying ``load_id``; a duplicate ``dedup_key`` (the
   person is already in the batch) is skipped, which makes a reload idempotent;
3. the batch is replaced whole with its final status (never ``$set`` of dates: DESIGN.md section 6).
On failure the jobs with this ``load_id`` are deleted and the batch removed (if this load created it)
or given back its previous status. A load killed mid-way leaves the marker; the next load of the batch,
or ``clean_abandoned_loads`` at start-up, undoes it the same way.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import structlog
from beanie.odm.utils.dump import get_dict
from pymongo.errors import BulkWriteError, DuplicateKeyError

from actors.clock import utc
from speechai.domain.caller_id_rules import batch_caller_id_violations
from speechai.loader.columns import resolve
from speechai.loader.errors import LoadError, RowError
from speechai.loader.limits import DEFAULT_LIMITS, Limits
from speechai.loader.people import ParseResult, Person, parse_rows, zone_warnings
from speechai.loader.reader import DEFAULT_READER, open_sheet
from speechai.loader.report import write_report
from speechai.loader.segmenting import Segmenter, check_segments
from speechai.loader.spec import BatchSource
from speechai.store.models import FINAL_STATES, Account, Batch, BatchStatus, CallerId, Job, JobState, Phone

log = structlog.get_logger("speechai.loader")

INSERT_CHUNK = 1000
QUERY_CHUNK = 500
_MARKER = "loader:"
_DUPLICATE_KEY = 11000


@dataclass
class LoadSummary:
    batch_id: str
    format: str
    rows: int
    people: int
    jobs_created: int
    already_present: int  # people already in this batch (a reload)
    duplicates_skipped: int  # people pending in another batch of the account
    rejected: list[RowError]
    report_path: Path | None
    ok: bool
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (person_key, other batch)
    warnings: list[RowError] = field(default_factory=list)  # dropped phone numbers and the like
    segment_warnings: list[str] = field(default_factory=list)  # overlapping or unreachable segment rules
    segments: dict[str, int] = field(default_factory=dict)  # people written per segment
    # the Chile caller-ID rule was broken and the account's override let the batch through
    chile_rule_override: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "format": self.format,
            "ok": self.ok,
            "rows": self.rows,
            "people": self.people,
            "jobs_created": self.jobs_created,
            "already_present": self.already_present,
            "duplicates_skipped": self.duplicates_skipped,
            "rejected_rows": len({e.row for e in self.rejected}),
            "rejected": [e.to_dict() for e in self.rejected],
            "duplicates": [{"person_key": k, "batch_id": b} for k, b in self.duplicates],
            "warnings": [e.to_dict() for e in self.warnings],
            "segment_warnings": self.segment_warnings,
            "segments": self.segments,
            "report_path": str(self.report_path) if self.report_path else None,
            "chile_rule_override": self.chile_rule_override,
        }


def parse_file(source: BatchSource, progress: Callable[[int], None] | None = None,
               limits: Limits = DEFAULT_LIMITS, reader: str = DEFAULT_READER) -> ParseResult:
    """Read and validate the whole file (blocking; no database). ``reader``: see ``reader.READERS``."""
    with open_sheet(source.file, source.sheet, limits, reader) as sheet:
        columns = resolve(sheet.headers, source.format, source.columns, source.agent_variables)
        return parse_rows(sheet.rows, columns, source.default_region, progress, limits.max_field_chars)


@dataclass(frozen=True)
class BatchDialing:
    """The dialing fields a new batch is created with (docs/dialing.md); a reload keeps the stored ones
    for every field left unset here."""

    use_case: str | None = None
    caller_ids: tuple[CallerId, ...] = ()
    caller_id_daily_cap: int | None = None


async def load_batch(source: BatchSource, *, now: datetime, report_dir: Path,
                     progress: Callable[[int], None] | None = None,
                     limits: Limits = DEFAULT_LIMITS, dialing: BatchDialing = BatchDialing(),
                     default_from_number: str | None = None) -> LoadSummary:
    """``default_from_number``: the configured ``retell.from_number`` a batch without a pool or number of
    its own calls from (checked against the Chile rule; unset: only the batch's own numbers are)."""
    now = utc(now)
    dialing = await _format_use_case(source, dialing, source.format)
    override = await check_caller_ids(source, dialing, default_from_number)
    # Parsing is CPU-bound: a worker thread keeps the event loop (and its calls in flight) responsive.
    parsed = await anyio.to_thread.run_sync(parse_file, source, progress, limits)
    if source.format == "auto" and dialing.use_case is None:  # the detected format's use case, checked too
        dialing = await _format_use_case(source, dialing, parsed.columns.format)
        override = await check_caller_ids(source, dialing, default_from_number)
    if parsed.rows == 0:
        # Most likely the wrong file or sheet: an empty active batch would only hide that.
        raise LoadError(f"{source.file.name} has a header row but no data rows; nothing to load")
    # a rule on a column the file lacks refuses the load before anything is written
    segment_warnings = check_segments(source.segments, parsed.columns, source.call_settings)
    if parsed.errors and not source.accept_partial:
        return _summary(source, parsed, now, report_dir, created=0, present=0, duplicates=[], ok=False)
    parsed.reject_tainted_people()
    people = list(parsed.people.values())
    parsed.warnings.extend(zone_warnings(people, source.call_settings.timezone))  # "batch mixes time zones"
    await _ensure_account(source.account)
    load_id = uuid.uuid4().hex
    batch, previous = await _begin(source, now, load_id, dialing)
    try:
        duplicates = [] if source.allow_duplicates_across_batches else await _active_elsewhere(source, people)
        skip = {k for k, _ in duplicates}
        people = [p for p in people if p.key not in skip]
        present = await _present_in_batch(source, people)
        todo = [p for p in people if p.key not in present]
        created = 0
        if batch.segments != source.segments:  # a reload keeps the batch's settings, its segments too
            segment_warnings = check_segments(batch.segments, parsed.columns, batch.call_settings)
        job_doc = _JobDocs(source, parsed.columns.format, now, load_id)
        job_doc.segmenter = Segmenter(batch.segments, batch.call_settings)
        for chunk in _chunks(todo, INSERT_CHUNK):
            created += await _insert_chunk([job_doc(p) for p in chunk])
        await _finish(batch, previous)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _rollback(source.batch_id, load_id)
        raise
    summary = _summary(source, parsed, now, report_dir, created=created, present=len(present),
                       duplicates=duplicates, ok=True)
    summary.chile_rule_override = override
    summary.segment_warnings, summary.segments = segment_warnings, dict(job_doc.segments)
    return summary


async def _format_use_case(source: BatchSource, dialing: BatchDialing, fmt: str) -> BatchDialing:
    """The upload's use case, else the config's, else the one the format implies (docs/loader.md) for a
    new batch; a reload keeps the batch's stored one."""
    if dialing.use_case is not None:
        return dialing
    if "use_case" not in source.model_fields_set and await Batch.get(source.batch_id) is not None:
        return dialing
    return dataclasses.replace(dialing, use_case=source.use_case_for(fmt))


async def check_caller_ids(source: BatchSource, dialing: BatchDialing,
                           default_from_number: str | None) -> dict[str, str] | None:
    """Refuse (LoadError naming the rule and the numbers) a batch whose caller ids break the Chile rule
    for its use case, as it will be after this load; the account's explicit override lets it through,
    logged and returned for the load summary."""
    existing = await Batch.get(source.batch_id)
    if existing is not None and existing.account_id != source.account:
        return None  # refused by _begin, naming the owner
    account = await Account.get(source.account)
    use_case = dialing.use_case or (existing.use_case if existing is not None else None)
    pool = list(dialing.caller_ids) or (existing.caller_ids if existing is not None else []) \
        or (account.caller_ids if account is not None else [])
    from_number = source.from_number if existing is None else existing.from_number
    try:
        violations = batch_caller_id_violations(
            use_case=use_case, pool=[e.number for e in pool], from_number=from_number,
            default_from_number=default_from_number or "",
            preset=(existing.call_settings if existing is not None else source.call_settings).preset)
    except ValueError as exc:
        raise LoadError(str(exc)) from None
    violations = [v for v in violations if any(v.numbers)]  # "" stands for an unknown default number
    if not violations:
        return None
    text = "; ".join(v.message for v in violations)
    if account is None or not account.chile_rule_override:
        raise LoadError(f"batch {source.batch_id!r} refused: {text}. An account may dial anyway only with an "
                        "explicit chile_rule_override (audited)")
    log.warning("chile_rule_overridden", account_id=source.account, batch_id=source.batch_id,
                override=account.chile_rule_override, violations=text, at="load")
    return {"override": account.chile_rule_override, "violations": text}


async def clean_abandoned_loads() -> int:
    """Undo every load that was cut off (batch left in ``LOADING``); returns how many were undone.

    Call at start-up, when no load of this deployment is running.
    """
    count = 0
    async for batch in Batch.find({"status": str(BatchStatus.LOADING)}):
        marker = _read_marker(batch)
        await _rollback(batch.id, marker["load_id"] if marker else None)
        count += 1
    return count


def _summary(source: BatchSource, parsed: ParseResult, now: datetime, report_dir: Path, *, created: int,
             present: int, duplicates: list[tuple[str, str]], ok: bool) -> LoadSummary:
    report = None
    if parsed.errors or duplicates or parsed.warnings:
        report = write_report(report_dir, source.batch_id, now, parsed.errors, duplicates, parsed.warnings)
    return LoadSummary(
        batch_id=source.batch_id, format=parsed.columns.format, rows=parsed.rows,
        people=len(parsed.people), jobs_created=created, already_present=present,
        duplicates_skipped=len(duplicates), rejected=parsed.errors, report_path=report, ok=ok,
        duplicates=duplicates, warnings=parsed.warnings,
    )


def _chunks(items: list[Person], size: int) -> Iterator[list[Person]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class _JobDocs:
    """Job documents as raw dicts, for ``insert_many`` without a model instance per person.

    A ``Job`` is validated and encoded once, as the template; each person's document is that template
    with its own fields, so it stays exactly what Beanie writes (same fields, defaults and order) at
    a small fraction of the cost of validating and encoding 50,000 models.
    """

    def __init__(self, source: BatchSource, fmt: str, now: datetime, load_id: str) -> None:
        self.source = source
        self.fmt = fmt
        self.segmenter: Segmenter | None = None  # the batch's segment rules, when it has any
        self.segments: Counter[str] = Counter()  # people written per segment
        self.prefix = f"{source.account}:{source.batch_id}:"
        self.deadline = None
        if source.payment_deadline_days is not None:
            today = now.astimezone(source.call_settings.tz).date()
            self.deadline = (today + timedelta(days=source.payment_deadline_days)).isoformat()
        job = Job(account_id=source.account, batch_id=source.batch_id, dedup_key="", person_key="",
                  phones=[Phone(number="")], state=JobState.PENDING, version=0, next_try_at=now,
                  created_at=now, updated_at=now, load_id=load_id)
        self.template = get_dict(job, to_db=True, keep_nulls=job.get_settings().keep_nulls)
        self.phone = self.template["phones"][0]

    def __call__(self, person: Person) -> dict[str, Any]:
        variables = person.variables(self.fmt)
        if self.deadline is not None:
            variables["payment_deadline"] = self.deadline
        return {**self.template, "dedup_key": self.prefix + person.key, "person_key": person.key,
                "name": person.name, "national_id": person.national_id,
                "phones": [{**self.phone, "number": p.number, "kind": p.kind, "zones": list(p.zones)}
                           for p in person.ordered_phones()],
                "variables": variables, **self._segment(variables)}

    def _segment(self, variables: dict[str, str]) -> dict[str, Any]:
        if self.segmenter is None or not self.segmenter.rules:
            return {}
        fields = self.segmenter(variables)
        self.segments[fields["segment"]] += 1
        return fields


async def _insert_chunk(docs: list[dict[str, Any]]) -> int:
    """Insert, skipping people already in the batch (unique ``dedup_key``); returns how many were new."""
    if not docs:
        return 0
    try:
        result = await Job.get_pymongo_collection().insert_many(docs, ordered=False)
        return len(result.inserted_ids)
    except BulkWriteError as exc:
        others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
        if others:
            raise
        return int(exc.details.get("nInserted", 0))


async def _active_elsewhere(source: BatchSource, people: list[Person]) -> list[tuple[str, str]]:
    """People of this load still to be called in another (not cancelled) batch of the account."""
    coll = Job.get_pymongo_collection()
    others = {"account_id": source.account, "batch_id": {"$ne": source.batch_id},
              "state": {"$nin": [str(s) for s in FINAL_STATES]}}
    if await coll.find_one(others, {"_id": 1}) is None:
        return []  # the usual first load of an account: no per-person queries
    hits: dict[str, str] = {}
    for chunk in _chunks(people, QUERY_CHUNK):
        cursor = coll.find({**others, "person_key": {"$in": [p.key for p in chunk]}},
                           {"person_key": 1, "batch_id": 1})
        async for doc in cursor:
            hits.setdefault(doc["person_key"], doc["batch_id"])
    if not hits:
        return []
    live = {b.id async for b in Batch.find({"_id": {"$in": sorted(set(hits.values()))},
                                            "status": {"$in": [str(BatchStatus.ACTIVE),
                                                               str(BatchStatus.PAUSED)]}})}
    return [(p.key, hits[p.key]) for p in people if hits.get(p.key) in live]


async def _present_in_batch(source: BatchSource, people: list[Person]) -> set[str]:
    coll = Job.get_pymongo_collection()
    present: set[str] = set()
    if await coll.find_one({"batch_id": source.batch_id}, {"_id": 1}) is None:
        return present  # a new batch: nobody can be in it yet
    for chunk in _chunks(people, QUERY_CHUNK):
        keys = [f"{source.account}:{source.batch_id}:{p.key}" for p in chunk]
        async for doc in coll.find({"dedup_key": {"$in": keys}}, {"person_key": 1}):
            present.add(doc["person_key"])
    return present


async def _ensure_account(account_id: str) -> None:
    if await Account.get(account_id) is None:
        try:
            await Account(id=account_id).insert()
        except DuplicateKeyError:
            pass  # created meanwhile by another load


def _marker(load_id: str, previous: BatchStatus | None, previous_reason: str | None) -> str:
    return _MARKER + json.dumps({"load_id": load_id, "previous_status": previous and str(previous),
                                 "previous_reason": previous_reason})


def _read_marker(batch: Batch) -> dict[str, Any] | None:
    reason = batch.status_reason or ""
    if not reason.startswith(_MARKER):
        return None
    try:
        data = json.loads(reason[len(_MARKER):])
    except ValueError:
        return None
    return data if isinstance(data, dict) and "load_id" in data else None


Previous = tuple[BatchStatus, str | None]


async def _begin(source: BatchSource, now: datetime, load_id: str,
                 dialing: BatchDialing = BatchDialing()) -> tuple[Batch, Previous]:
    """Put the batch in ``LOADING`` for this load; returns it and the status to finish with."""
    batch = await Batch.get(source.batch_id)
    if batch is not None and batch.status == BatchStatus.LOADING:
        marker = _read_marker(batch)
        await _rollback(batch.id, marker["load_id"] if marker else None)  # a load that was cut off
        batch = await Batch.get(source.batch_id)
    if batch is None:
        batch = Batch(
            id=source.batch_id, account_id=source.account, name=source.name or source.batch_id,
            status=BatchStatus.LOADING, call_settings=source.call_settings, agent_id=source.agent_id,
            from_number=source.from_number, source_file=source.file.name, created_at=now,
            status_reason=_marker(load_id, None, None), use_case=dialing.use_case,
            caller_ids=list(dialing.caller_ids), caller_id_daily_cap=dialing.caller_id_daily_cap,
            segments=source.segments,
        )
        try:
            await batch.insert()
        except DuplicateKeyError:
            raise LoadError(f"batch {source.batch_id!r} is being loaded by another process") from None
        return batch, (BatchStatus.ACTIVE, None)
    if batch.account_id != source.account:
        raise LoadError(f"batch {source.batch_id!r} belongs to account {batch.account_id!r}, "
                        f"not {source.account!r}")
    if batch.status == BatchStatus.CANCELLED:
        raise LoadError(f"batch {source.batch_id!r} is cancelled; load the file under a new batch id")
    # A reload keeps the batch's settings (they may have been changed since) and only adds people.
    previous = (batch.status, batch.status_reason)
    batch.status = BatchStatus.LOADING
    batch.status_reason = _marker(load_id, *previous)
    await batch.replace()
    return batch, previous


async def _finish(batch: Batch, previous: Previous) -> None:
    batch.status, batch.status_reason = previous
    await batch.replace()


async def _rollback(batch_id: str, load_id: str | None) -> None:
    """Delete this load's jobs; remove the batch it created or give an existing batch its status back."""
    batch = await Batch.get(batch_id)
    marker = _read_marker(batch) if batch is not None else None
    if load_id is not None:
        await Job.get_pymongo_collection().delete_many({"batch_id": batch_id, "load_id": load_id})
    if batch is None or batch.status != BatchStatus.LOADING:
        return
    if marker is None or marker.get("previous_status") is None:
        # Created by the load being undone: whatever jobs it has came from that load.
        await Job.get_pymongo_collection().delete_many({"batch_id": batch_id})
        await batch.delete()
        return
    batch.status = BatchStatus(marker["previous_status"])
    batch.status_reason = marker.get("previous_reason")
    await batch.replace()
