"""Report figures from the stored jobs, in one streaming pass (a cursor per batch and state, with a
projection), never by loading every document at once.

Counting rules, stated once so every renderer agrees:

- a *call* is an attempt the provider placed (``placed`` true); an attempt it never placed (capacity,
  refused, unknown after a crash) is counted apart as *not placed*;
- a *contact* is a call whose outcome class is ``conversation`` (a person talked); a *success* is a
  call the analysis (or the use case's rule) judged successful;
- an attempt belongs to the business day and hour of its creation in its batch's timezone; ``--from``
  and ``--to`` select attempts (and stopped jobs, by their last change) by that local date, inclusive;
- money is the provider's ``combined_cost`` in cents, summed as decimals (exact, no float drift), in the
  currency of the batch's account (``Account.currency``, default USD; never converted): totals over
  accounts of different currencies are not added up (the totals' money cells stay empty, and the
  per-currency sums are in ``Report.costs_by_currency``);
- a promise's amount is in the currency the call collected with it (``promised_currency`` …), else in
  the account's (``currency_from`` says which);
- the phone position compares the attempt's phone with the job's ``phones`` order (1 = primary).

Jobs per state are the current states, whatever the dates. Read while a campaign runs, a job that changes
state during the pass may be seen in neither state or (never twice) in both: the pass skips repeats.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import anyio.lowlevel

from speechai.reports.segments import COLUMNS as SEGMENT_COLUMNS
from speechai.reports.segments import SegmentFigures
from speechai.reports.values import cents
from speechai.store.models import Account, Batch, DoNotCall, Job, JobState, currency_code

CENTS_PLACES = Decimal("0.0001")
RATE_PLACES = Decimal("0.0001")
CURRENCY = "USD"  # an account's currency unless it names one (Retell bills in US dollars)
MIXED = "mixed"  # the report's currency when its accounts have different ones
OUTCOME_CLASSES = ("conversation", "voicemail", "no_answer", "bad_number", "provider_error", "capacity", "account")
WAITING_STATES = (JobState.PENDING, JobState.RETRY, JobState.SUSPENDED)
STOPPED_STATES = (JobState.FAILED, JobState.EXCLUDED, JobState.SUSPENDED, JobState.CANCELLED)
# Keys an agent hands back for a promise to pay (the simulator's, and the usual Spanish ones).
PROMISE_AMOUNT_KEYS = ("promised_amount", "monto_prometido", "promise_amount")
PROMISE_DATE_KEYS = ("promised_payment_date", "fecha_compromiso", "fecha_pago", "promise_date")
PROMISE_CURRENCY_KEYS = ("promised_currency", "promise_currency", "currency", "moneda")
JOB_FIELDS = {"batch_id": 1, "state": 1, "name": 1, "phones": 1, "variables": 1, "attempts": 1,
              "last_reason": 1, "next_try_ms": 1, "updated_at": 1, "segment": 1, "arm": 1}
CURSOR_BATCH = 500  # documents per round trip: memory stays bounded by this, not by the batch
YIELD_EVERY = 20  # jobs processed between two yields to the event loop (a few ms of work)


def unprintable(text: str) -> str | None:
    """The first control or surrogate character of ``text``, None when there is none."""
    return next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs")), None)


@dataclass(frozen=True)
class ReportFilter:
    batch: str | None = None
    account: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def __post_init__(self) -> None:
        for name, value in (("batch", self.batch), ("account", self.account)):
            if value is not None and (bad := unprintable(value)) is not None:
                # no id holds one; refused here, it would reach every renderer (and break the workbook)
                raise ValueError(f"{name} must not contain control characters (found U+{ord(bad):04X})")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"from ({self.date_from.isoformat()}) is after to ({self.date_to.isoformat()})")

    def has_day(self, day: date) -> bool:
        return (self.date_from is None or day >= self.date_from) and (self.date_to is None or day <= self.date_to)

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "account": self.account,
                "from": self.date_from.isoformat() if self.date_from else None,
                "to": self.date_to.isoformat() if self.date_to else None}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "int"  # text | int | cents | rate | minutes | number | date | datetime


@dataclass
class Section:
    key: str
    title: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [{c.name: v for c, v in zip(self.columns, row, strict=True)} for row in self.rows]


@dataclass
class Report:
    generated_at: datetime
    filter: ReportFilter
    sections: dict[str, Section]
    currency: str = CURRENCY  # the accounts' one currency, or MIXED
    costs_by_currency: dict[str, Decimal] = field(default_factory=dict)

    def section(self, key: str) -> Section:
        return self.sections[key]


def ratio(part: int | Decimal, whole: int | Decimal, places: Decimal = RATE_PLACES) -> Decimal | None:
    return None if not whole else (Decimal(part) / Decimal(whole)).quantize(places)


def minutes(ms: int) -> Decimal:
    return (Decimal(ms) / 60000).quantize(Decimal("0.01"))


def number(value: Any) -> Decimal | None:
    """A collected value as a number ("150000", "150.000,50" → 150000.50), None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return cents(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("$", "").replace(" ", "")
    if "," in text and "." in text:  # 150.000,50 (Chilean) or 150,000.50
        text = text.replace(".", "").replace(",", ".") if text.rfind(",") > text.rfind(".") else text.replace(",", "")
    elif "," in text:
        text = text.replace(",", ".") if len(text.rsplit(",", 1)[1]) != 3 else text.replace(",", "")
    elif text.count(".") > 1 or (text.count(".") == 1 and len(text.rsplit(".", 1)[1]) == 3):
        text = text.replace(".", "")  # thousands separators
    try:
        out = Decimal(text)
    except InvalidOperation:
        return None
    return out if out.is_finite() else None


def parse_day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass
class Tally:
    """Calls and their results for one bucket (a batch, a day, an hour, a phone position)."""

    calls: int = 0
    not_placed: int = 0
    in_progress: int = 0
    contacts: int = 0
    successes: int = 0
    talk_ms: int = 0
    cost: Decimal = field(default_factory=Decimal)
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, attempt: dict[str, Any]) -> None:
        self.add_figures(attempt_figures(attempt))

    def add_figures(self, f: tuple[Any, ...]) -> None:
        """One attempt's ``attempt_figures`` (read once, added to each of its buckets)."""
        placed, outcome, success, talk_ms, cost = f
        if placed is not True:
            self.not_placed += placed is False
            return
        self.calls += 1
        if outcome is None:
            self.in_progress += 1
        else:
            self.outcomes[outcome] += 1
        self.contacts += outcome == "conversation"
        self.successes += success
        self.talk_ms += talk_ms
        self.cost += cost

    def rates(self) -> list[Any]:
        return [ratio(self.contacts, self.calls), ratio(self.successes, self.calls)]

    def money(self) -> list[Any]:
        return [self.cost, ratio(self.cost, self.calls, CENTS_PLACES), ratio(self.cost, self.successes, CENTS_PLACES)]


def attempt_figures(attempt: dict[str, Any]) -> tuple[Any, bool | None, bool, int, Decimal]:
    """(placed, outcome, success, talk ms, cost) of a stored attempt, converted once per attempt."""
    if attempt.get("placed") is not True:
        return attempt.get("placed"), None, False, 0, Decimal(0)
    return (True, attempt.get("outcome"), attempt.get("success") is True, int(attempt.get("duration_ms") or 0),
            cents(attempt.get("cost_cents")))


RESULT_COLUMNS = [Column("calls"), Column("contacts"), Column("successes"), Column("contact_rate", "rate"),
                  Column("success_rate", "rate")]
MONEY_COLUMNS = [Column("cost_cents", "cents"), Column("cost_per_call_cents", "cents"),
                 Column("cost_per_success_cents", "cents")]


@dataclass
class _BatchInfo:
    doc: dict[str, Any]
    tz: tzinfo
    currency: str = CURRENCY
    states: Counter[str] = field(default_factory=Counter)
    earliest_ms: dict[str, int] = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)


@dataclass
class _Pass:
    """Everything the report needs, accumulated job by job."""

    flt: ReportFilter
    batches: dict[str, _BatchInfo] = field(default_factory=dict)
    total: Tally = field(default_factory=Tally)
    by_reason: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_day: dict[date, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_hour: dict[int, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_position: dict[int, Tally] = field(default_factory=lambda: defaultdict(Tally))
    calls_per_job: Counter[int] = field(default_factory=Counter)
    stopped: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    promises: list[list[Any]] = field(default_factory=list)
    collected: dict[str, list[Any]] = field(default_factory=dict)  # key -> [attempts, numeric sum, numeric n]
    jobs: int = 0
    segments: SegmentFigures = field(default_factory=SegmentFigures)  # per batch and segment
    dialing: Any = None  # speechai.reports.dialing.DialingTally: the caller-id and A/B arm sections

    def job(self, info: _BatchInfo, raw: dict[str, Any]) -> None:
        self.jobs += 1
        state = str(raw.get("state"))
        info.states[state] += 1
        if state in {s.value for s in WAITING_STATES} and "next_try_ms" in raw:
            info.earliest_ms[state] = min(info.earliest_ms.get(state, raw["next_try_ms"]), raw["next_try_ms"])
        if state in {s.value for s in STOPPED_STATES}:
            changed = raw.get("updated_at")
            if not isinstance(changed, datetime) or self.flt.has_day(_aware(changed).astimezone(info.tz).date()):
                self.stopped[(info.doc["_id"], state, raw.get("last_reason") or "")] += 1
        numbers = [p.get("number") for p in raw.get("phones") or []]
        sent = raw.get("variables") or {}
        calls = 0
        in_range: list[dict[str, Any]] = []
        for attempt in raw.get("attempts") or []:
            created = attempt.get("created_at")
            if not isinstance(created, datetime):
                continue
            local = _aware(created).astimezone(info.tz)
            if not self.flt.has_day(local.date()):
                continue
            calls += attempt.get("placed") is True
            in_range.append(attempt)
            phone = attempt.get("phone")
            position = numbers.index(phone) + 1 if phone in numbers else 0
            figures = attempt_figures(attempt)
            for tally in (info.tally, self.total, self.by_day[local.date()], self.by_hour[local.hour],
                          self.by_position[position]):
                tally.add_figures(figures)
            if figures[0] is True and figures[1]:
                reason = attempt.get("disconnection_reason") or f"status_{attempt.get('call_status') or 'unknown'}"
                self.by_reason[(figures[1], reason)].add_figures(figures)
            self._collected(info, raw, attempt, local, sent)
        self.calls_per_job[calls] += 1
        self.segments.job(info.doc["_id"], raw, in_range)
        if self.dialing is not None:
            self.dialing.job(info.doc, info.tz, raw, in_range)

    def _collected(self, info: _BatchInfo, raw: dict[str, Any], attempt: dict[str, Any], local: datetime,
                   sent: dict[str, Any]) -> None:
        got = attempt.get("collected") or {}
        # collected_dynamic_variables echoes what we sent: only what the call added (or changed) counts
        new = {k: v for k, v in got.items() if sent.get(k) != v}
        for key, value in new.items():
            slot = self.collected.setdefault(key, [0, Decimal(0), 0])
            slot[0] += 1
            if (n := number(value)) is not None:
                slot[1] += n
                slot[2] += 1
        amount_key = next((k for k in PROMISE_AMOUNT_KEYS if new.get(k) not in (None, "")), None)
        date_key = next((k for k in PROMISE_DATE_KEYS if new.get(k) not in (None, "")), None)
        if amount_key or date_key:
            said = next((c for k in PROMISE_CURRENCY_KEYS if (c := _code(got.get(k))) is not None), None)
            self.promises.append([
                info.doc["_id"], str(raw["_id"]), raw.get("name") or "", local.replace(tzinfo=None),
                number(new.get(amount_key)) if amount_key else None,
                said or info.currency, "collected" if said else "account",
                parse_day(new.get(date_key)) if date_key else None,
                attempt.get("success") is True, attempt.get("call_id") or "",
            ])


async def _batches(flt: ReportFilter) -> list[dict[str, Any]]:
    """The batches the report covers (the batches collection holds hundreds: a plain find)."""
    query: dict[str, Any] = {}
    if flt.batch is not None:
        query["_id"] = flt.batch
    if flt.account is not None:
        query["account_id"] = flt.account
    # the whole call_settings: the embedded server answers a dotted projection with a flat dotted key
    fields = {"account_id": 1, "name": 1, "status": 1, "status_reason": 1, "waiting_reason": 1,
              "call_settings": 1, "from_number": 1, "agent_split": 1}
    return await Batch.get_pymongo_collection().find(query, fields).sort("_id", 1).to_list()


def _code(value: Any) -> str | None:
    """A collected currency as an ISO 4217 code ("clp" → "CLP"), None when it is not one."""
    try:
        return currency_code(value) if isinstance(value, str) else None
    except ValueError:
        return None


async def _currencies(accounts: set[str]) -> dict[str, str]:
    """Each account's currency (an account without a document: the default)."""
    found = await Account.get_pymongo_collection().find(
        {"_id": {"$in": sorted(accounts)}}, {"currency": 1}).to_list() if accounts else []
    return {d["_id"]: _code(d.get("currency")) or CURRENCY for d in found}


def batch_tz(batch: dict[str, Any]) -> tzinfo:
    """A batch document's timezone (nested, or flat as a dotted projection comes back from nx-27017)."""
    name = (batch.get("call_settings") or {}).get("timezone") or batch.get("call_settings.timezone")
    return ZoneInfo(name or "America/Santiago")


_tz = batch_tz


async def build_report(flt: ReportFilter, now: datetime, *, on_jobs: Any = None) -> Report:
    """The report for ``flt``; ``on_jobs(n)`` hears how many jobs were read so far (progress)."""
    from speechai.reports.dialing import DialingTally, dialing_sections  # it builds on this module

    run = _Pass(flt, dialing=DialingTally())
    coll = Job.get_pymongo_collection()
    docs = await _batches(flt)
    currency_of = await _currencies({d.get("account_id") for d in docs if d.get("account_id")})
    for doc in docs:
        info = run.batches[doc["_id"]] = _BatchInfo(doc=doc, tz=_tz(doc),
                                                    currency=currency_of.get(doc.get("account_id"), CURRENCY))
        seen: set[Any] = set()
        # One cursor per (batch, state): the (batch_id, state) index answers each in full.
        for state in JobState:
            cursor = coll.find({"batch_id": doc["_id"], "state": state.value}, JOB_FIELDS, batch_size=CURSOR_BATCH)
            async for raw in cursor:
                if raw["_id"] in seen:
                    continue
                seen.add(raw["_id"])
                run.job(info, raw)
                if run.jobs % YIELD_EVERY == 0:
                    # buffered documents are processed without awaiting: yield so the runtime serving
                    # this report (the control endpoint's route) keeps running its calls meanwhile
                    await anyio.lowlevel.checkpoint()
                if on_jobs is not None and run.jobs % CURSOR_BATCH == 0:
                    on_jobs(run.jobs)
    if on_jobs is not None:
        on_jobs(run.jobs)
    dnc = await _do_not_call(flt, run)
    costs: dict[str, Decimal] = {}
    for info in run.batches.values():
        costs[info.currency] = costs.get(info.currency, Decimal(0)) + info.tally.cost
    currency = next(iter(costs)) if len(costs) == 1 else CURRENCY if not costs else MIXED
    sections = _sections(run, dnc, currency)
    sections.update(await dialing_sections(run.dialing, flt, {i.doc.get("account_id") for i in run.batches.values()}))
    return Report(generated_at=now, filter=flt, sections=sections, currency=currency, costs_by_currency=costs)


async def _do_not_call(flt: ReportFilter, run: _Pass) -> list[list[Any]]:
    """Do-not-call entries added in the range, for the accounts of the covered batches."""
    accounts = sorted({i.doc.get("account_id") for i in run.batches.values()} | ({flt.account} - {None}))
    tz_of = {i.doc.get("account_id"): i.tz for i in run.batches.values()}
    rows = []
    for account in accounts:
        tz = tz_of.get(account, ZoneInfo("America/Santiago"))
        async for raw in DoNotCall.get_pymongo_collection().find({"account_id": account}).sort("key", 1):
            added = raw.get("added_at")
            local = _aware(added).astimezone(tz) if isinstance(added, datetime) else None
            if local is not None and not flt.has_day(local.date()):
                continue
            rows.append([account, raw.get("key", ""), raw.get("reason", ""),
                         local.replace(tzinfo=None) if local else None])
    return rows


def _why_waiting(info: _BatchInfo, state: str) -> str:
    doc = info.doc
    if doc.get("status") in ("paused", "cancelled"):
        return f"batch {doc['status']}: {doc.get('status_reason') or 'by operator'}"
    if doc.get("waiting_reason"):
        return str(doc["waiting_reason"])
    if state in info.earliest_ms:
        at = datetime.fromtimestamp(info.earliest_ms[state] / 1000, UTC).astimezone(info.tz)
        return f"next due {at.strftime('%Y-%m-%d %H:%M')} local"
    return ""


def _sections(run: _Pass, dnc: list[list[Any]], currency: str) -> dict[str, Section]:
    states = [s.value for s in JobState]
    s: dict[str, Section] = {}

    def add(section: Section) -> None:
        s[section.key] = section

    t = run.total
    promise_currencies = {p[5] for p in run.promises if p[4] is not None}
    promised = (sum((p[4] for p in run.promises if p[4] is not None), Decimal(0))
                if len(promise_currencies) <= 1 else None)  # amounts of different currencies: not added
    money = t.money() if currency != MIXED else [None, None, None]
    add(Section("totals", "Totals", [
        Column("batches"), Column("jobs"), Column("calls"), Column("not_placed"), Column("contacts"),
        Column("successes"), Column("contact_rate", "rate"), Column("success_rate", "rate"), Column("talk_ms"),
        Column("talk_minutes", "minutes"), *MONEY_COLUMNS, Column("promises"),
        Column("promised_amount", "number"), Column("do_not_call_added"), Column("currency", "text"),
        Column("promised_currency", "text")],
        [[len(run.batches), run.jobs, t.calls, t.not_placed, t.contacts, t.successes, *t.rates(), t.talk_ms,
          minutes(t.talk_ms), *money, len(run.promises), promised, len(dnc), currency,
          next(iter(promise_currencies)) if len(promise_currencies) == 1 else MIXED if promise_currencies else ""]]))
    add(Section("batches", "Batches", [
        Column("batch", "text"), Column("account", "text"), Column("name", "text"), Column("status", "text"),
        Column("timezone", "text"), Column("jobs"), *[Column(st) for st in states], Column("waiting_reason", "text"),
        Column("not_placed"), *RESULT_COLUMNS, Column("talk_minutes", "minutes"), *MONEY_COLUMNS,
        Column("currency", "text")],
        [[bid, i.doc.get("account_id"), i.doc.get("name", ""), i.doc.get("status"), str(i.tz), i.states.total(),
          *[i.states[st] for st in states], i.doc.get("waiting_reason") or "", i.tally.not_placed,
          i.tally.calls, i.tally.contacts, i.tally.successes, *i.tally.rates(), minutes(i.tally.talk_ms),
          *i.tally.money(), i.currency] for bid, i in run.batches.items()]))
    add(Section("states", "Jobs by state", [Column("batch", "text"), Column("state", "text"), Column("jobs"),
                                             Column("why", "text")],
                [[bid, st, n, _why_waiting(i, st) if st in {w.value for w in WAITING_STATES} else ""]
                 for bid, i in run.batches.items() for st in states if (n := i.states[st])]))
    add(Section("outcomes", "Calls by outcome and disconnection reason", [
        Column("outcome", "text"), Column("disconnection_reason", "text"), Column("calls"), Column("successes"),
        Column("share", "rate"), Column("talk_minutes", "minutes"), Column("cost_cents", "cents")],
        [[o, r, x.calls, x.successes, ratio(x.calls, t.calls), minutes(x.talk_ms), x.cost]
         for (o, r), x in sorted(run.by_reason.items(), key=lambda kv: (-kv[1].calls, kv[0]))]))
    add(Section("days", "Calls per local day", [
        Column("date", "date"), *RESULT_COLUMNS, Column("not_placed"), Column("talk_minutes", "minutes"),
        Column("cost_cents", "cents"), *[Column(o) for o in OUTCOME_CLASSES]],
        [[d, *_results(x), x.not_placed, minutes(x.talk_ms), x.cost, *[x.outcomes[o] for o in OUTCOME_CLASSES]]
         for d, x in sorted(run.by_day.items())]))
    add(Section("hours", "Calls per local hour of day", [Column("hour"), *RESULT_COLUMNS, Column("not_placed")],
                [[h, *_results(x), x.not_placed] for h, x in sorted(run.by_hour.items())]))
    add(Section("phones", "Calls by phone position", [Column("position"), Column("phone", "text"), *RESULT_COLUMNS,
                                                      Column("not_placed")],
                [[p, _position_name(p), *_results(x), x.not_placed] for p, x in sorted(run.by_position.items())]))
    add(Section("attempts_per_job", "Calls per job", [Column("calls"), Column("jobs"), Column("share", "rate")],
                [[n, jobs, ratio(jobs, run.jobs)] for n, jobs in sorted(run.calls_per_job.items())]))
    add(Section("promises", "Promises to pay", [
        Column("batch", "text"), Column("job_id", "text"), Column("name", "text"), Column("called_at", "datetime"),
        Column("promised_amount", "number"), Column("currency", "text"), Column("currency_from", "text"),
        Column("promised_date", "date"), Column("success", "text"), Column("call_id", "text")],
        [[*p[:8], "yes" if p[8] else "no", p[9]] for p in sorted(run.promises, key=lambda p: (p[0], p[3]))]))
    add(Section("collected", "Collected variables", [Column("variable", "text"), Column("calls"),
                                                     Column("numeric_values"), Column("numeric_total", "number")],
                [[k, v[0], v[2], v[1] if v[2] else None] for k, v in sorted(run.collected.items())]))
    add(Section("stopped", "Jobs stopped and why", [Column("batch", "text"), Column("state", "text"),
                                                    Column("reason", "text"), Column("jobs")],
                [[b, st, r, n] for (b, st, r), n in sorted(run.stopped.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                                                 -kv[1], kv[0][2]))]))
    add(Section("do_not_call", "Do-not-call additions", [Column("account", "text"), Column("key", "text"),
                                                         Column("reason", "text"), Column("added_at", "datetime")],
                dnc))
    add(Section("segments", "Segments", [Column(n, k) for n, k in SEGMENT_COLUMNS], run.segments.table()))
    return s


def _results(x: Tally) -> list[Any]:
    return [x.calls, x.contacts, x.successes, *x.rates()]


def _position_name(position: int) -> str:
    return {0: "unknown", 1: "primary"}.get(position, f"alternative {position - 1}")


def plain(value: Any) -> Any:
    """A cell as JSON: decimals as numbers (integral ones as int), dates as ISO text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def to_json(report: Report) -> dict[str, Any]:
    return {
        "generated_at": report.generated_at.isoformat(), "filter": report.filter.to_dict(),
        "currency": report.currency, "money_unit": "cents",
        "costs_by_currency": {k: plain(v) for k, v in report.costs_by_currency.items()},
        "sections": {k: {"title": sec.title, "columns": [{"name": c.name, "kind": c.kind} for c in sec.columns],
                         "rows": [{k2: plain(v) for k2, v in r.items()} for r in sec.records()]}
                     for k, sec in report.sections.items()},
    }
