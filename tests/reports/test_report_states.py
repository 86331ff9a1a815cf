"""Report figures that need their own campaigns: why jobs wait (outside hours, suspended for credit, a
paused batch), business dates across a UTC day boundary, the accounts' currencies, and stored text with
control characters in the workbook."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import anyio
from openpyxl import load_workbook

from actors.clock import SimClock
from speechai.domain.settings import CallSettings, HourRange, RetryDelays
from speechai.reports.data import ReportFilter, build_report
from speechai.reports.render import render_terminal
from speechai.reports.xlsx import write_xlsx
from speechai.retell.simulator import RetellSimulator
from speechai.store.models import Account, Batch, BatchStatus, DoNotCall, Job, Plan
from tests.reports.campaign import MONDAY_0850, SCL, SETTINGS
from tests.runtime.harness import API_KEY, Person, make_config, run_campaign, script, seed_batch

TOKYO = ZoneInfo("Asia/Tokyo")


async def test_why_jobs_wait(db, mongo_uri, tmp_path) -> None:
    """A batch whose retry falls after its window closed, an account out of credit and a paused batch:
    the report says, per batch and state, why each waiting job waits."""
    short = CallSettings(max_attempts=3, allowed_hours=[HourRange(start=time(9), end=time(9, 30))],
                         days_of_week=[1, 2, 3, 4, 5], retry_delay_min=RetryDelays(no_answer=60))
    late = Person(["+56910000001"], {"+56910000001": ["no_answer", "success"]}, name="Tarde")
    broke = Person(["+56910000002"], {"+56910000002": ["success"]}, name="Sin credito")
    held = Person(["+56910000003"], name="En pausa")
    clock = SimClock(MONDAY_0850, speed=600)
    stop = anyio.Event()
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=2, ring_s=5) as sim:
        script(sim, [late, broke])
        await seed_batch("late", [late], short, MONDAY_0850)
        await Account(id="broke", plan=Plan.CREDITS, balance_cents=10).insert()
        await seed_batch("broke", [broke], SETTINGS, MONDAY_0850, account="broke")
        await seed_batch("held", [held], SETTINGS, MONDAY_0850, status=BatchStatus.PAUSED)

        async def until_waiting() -> None:
            # the first call went unanswered, its retry is due after 9:30 and the window has closed
            with anyio.fail_after(60):
                while True:
                    b = await Batch.get_pymongo_collection().find_one({"_id": "late"})
                    susp = await Job.get_pymongo_collection().find_one({"batch_id": "broke", "state": "suspended"})
                    if (b or {}).get("waiting_reason", "") and susp is not None:
                        stop.set()
                        return
                    await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(until_waiting)
            # real seconds: the window closes 40 s of business time after the start (4 s at speed 600),
            # and the next one opens a day later (2 min 20 s): skip_idle off so the wait is observable
            await run_campaign(db, make_config(db, mongo_uri, tmp_path, skip_idle=False), clock, sim,
                               stop=stop, timeout=90)

    report = await build_report(ReportFilter(), clock.now())
    states = {(r["batch"], r["state"]): (r["jobs"], r["why"]) for r in report.section("states").records()}
    jobs, why = states[("late", "retry_scheduled")]
    assert jobs == 1 and why.startswith("outside allowed hours; window opens "), why
    jobs, why = states[("broke", "suspended")]
    assert jobs == 1 and why == "account suspended: out of credit", why
    jobs, why = states[("held", "pending")]
    assert jobs == 1 and why.startswith("batch paused: "), why
    # the batches sheet carries the batch's own waiting reason, the stopped section the job's
    by_batch = {r["batch"]: r for r in report.section("batches").records()}
    assert by_batch["late"]["retry_scheduled"] == 1 and by_batch["late"]["calls"] == 1
    assert by_batch["broke"]["suspended"] == 1 and by_batch["broke"]["calls"] == 0
    stopped = {(r["batch"], r["state"]): r["reason"] for r in report.section("stopped").records()}
    assert stopped[("broke", "suspended")].startswith("out of credit")
    text = render_terminal(report)
    assert "account suspended: out of credit" in text and "outside allowed hours; window opens" in text


async def test_business_dates_across_the_utc_day_boundary(db, mongo_uri, tmp_path) -> None:
    """Santiago calls at 21:00 on Monday happen on Tuesday in UTC; a Tokyo batch's calls at 09:00 on
    Tuesday happen at the same instant. --from/--to select each batch's own local date."""
    start = datetime(2026, 3, 2, 20, 50, tzinfo=SCL)  # 23:50 UTC, Tuesday 08:50 in Tokyo
    evening = CallSettings(max_attempts=1, allowed_hours=[HourRange(start=time(21), end=time(23))],
                           days_of_week=[1, 2, 3, 4, 5])
    morning = CallSettings(timezone="Asia/Tokyo", max_attempts=1, allowed_hours=[HourRange(start=time(9),
                                                                                             end=time(11))],
                           days_of_week=[1, 2, 3, 4, 5])
    scl = [Person([f"+5692000000{i}"], {f"+5692000000{i}": ["success"]}, name=f"S{i}") for i in range(2)]
    # Japanese mobiles: a Chilean number would also have to be inside its own (Santiago) hours
    tyo = [Person([f"+81901234567{i}"], {f"+81901234567{i}": ["voicemail"]}, name=f"T{i}") for i in range(3)]
    clock = SimClock(start, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=4, ring_s=5, talk_s={"success": 60}) as sim:
        script(sim, scl + tyo)
        await seed_batch("scl", scl, evening, start)
        await seed_batch("tyo", tyo, morning, start)
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)

    placed = [(j.batch_id, a.created_at) async for j in Job.find({}) for a in j.attempts if a.placed]
    assert len(placed) == 5
    assert all(at.date() == date(2026, 3, 3) for _, at in placed)  # every call is on Tuesday in UTC
    assert {at.astimezone(SCL).date() for b, at in placed if b == "scl"} == {date(2026, 3, 2)}
    assert {at.astimezone(TOKYO).date() for b, at in placed if b == "tyo"} == {date(2026, 3, 3)}

    async def calls(day: date, **kw: str) -> dict[str, int]:
        report = await build_report(ReportFilter(date_from=day, date_to=day, **kw), clock.now())
        return {r["batch"]: r["calls"] for r in report.section("batches").records()}

    assert await calls(date(2026, 3, 2)) == {"scl": 2, "tyo": 0}
    assert await calls(date(2026, 3, 3)) == {"scl": 0, "tyo": 3}
    assert await calls(date(2026, 3, 2), batch="scl") == {"scl": 2}
    full = await build_report(ReportFilter(), clock.now())
    assert {r["date"]: r["calls"] for r in full.section("days").records()} == {date(2026, 3, 2): 2,
                                                                               date(2026, 3, 3): 3}
    assert {r["hour"]: r["calls"] for r in full.section("hours").records()} == {21: 2, 9: 3}
    assert {r["batch"]: r["timezone"] for r in full.section("batches").records()} == {
        "scl": "America/Santiago", "tyo": "Asia/Tokyo"}
    # the stopped jobs (failed: voicemail, 1 of 1 attempts) are dated by their local day as well
    stopped = (await build_report(ReportFilter(date_from=date(2026, 3, 3), date_to=date(2026, 3, 3)),
                                  clock.now())).section("stopped").records()
    assert [(r["batch"], r["state"], r["jobs"]) for r in stopped] == [("tyo", "failed", 3)]


async def test_currency_and_control_characters(db, mongo_uri, tmp_path) -> None:
    """Cost in each account's currency (never added across currencies); promises in the currency the
    call collected, else the account's; stored text with control characters kept readable in every
    rendering, the workbook included."""
    chile = Person(["+56940000001"], {"+56940000001": ["success"]}, name="Pe\x01dro")
    usa = Person(["+56940000002"], {"+56940000002": ["success"]}, name="Ann")
    clock = SimClock(MONDAY_0850, speed=600)
    async with RetellSimulator(api_key=API_KEY, clock=clock, seed=8, ring_s=5, talk_s={"success": 100}) as sim:
        script(sim, [chile, usa])
        await Account(id="cl", currency="clp").insert()
        await seed_batch("pesos", [chile], SETTINGS, MONDAY_0850, account="cl")
        await seed_batch("dollars", [usa], SETTINGS, MONDAY_0850)
        await DoNotCall(account_id="cl", key="+56940000009", reason="a\x01b\x1b[2J", added_at=clock.now()).insert()
        await run_campaign(db, make_config(db, mongo_uri, tmp_path), clock, sim)
    assert (await Account.get("cl")).currency == "CLP"

    report = await build_report(ReportFilter(), clock.now())
    assert report.currency == "mixed"
    by_batch = {r["batch"]: r for r in report.section("batches").records()}
    assert (by_batch["pesos"]["currency"], by_batch["dollars"]["currency"]) == ("CLP", "USD")
    assert report.costs_by_currency == {"CLP": by_batch["pesos"]["cost_cents"],
                                        "USD": by_batch["dollars"]["cost_cents"]}
    assert all(c > 0 for c in report.costs_by_currency.values())
    [t] = report.section("totals").records()
    assert t["cost_cents"] is None and t["currency"] == "mixed"  # pesos and dollars are not added
    promises = {r["batch"]: (r["currency"], r["currency_from"]) for r in report.section("promises").records()}
    assert promises == {"pesos": ("CLP", "account"), "dollars": ("USD", "account")}
    text = render_terminal(report)
    assert f"cost {by_batch['pesos']['cost_cents'] / 100:,.2f} CLP + " in text
    assert "a\\x01b\\x1b[2J" in text and "\x1b" not in text  # escaped, never sent to the terminal

    only_usd = await build_report(ReportFilter(batch="dollars"), clock.now())
    assert only_usd.currency == "USD" and only_usd.section("totals").records()[0]["cost_cents"] == Decimal(
        by_batch["dollars"]["cost_cents"])

    path = tmp_path / "r.xlsx"
    write_xlsx(report, path)  # openpyxl refuses "\x01" in a cell: replaced, not a failure
    wb = load_workbook(path)
    dnc = wb["Do not call"]
    header = [c.value for c in dnc[1]]
    assert dnc.cell(row=2, column=header.index("reason") + 1).value == "a\ufffdb\ufffd[2J"
    promises_ws = wb["Promises"]
    names = {promises_ws.cell(row=r, column=3).value for r in range(2, promises_ws.max_row + 1)}
    assert names == {"Pe\ufffddro", "Ann"}
    assert {promises_ws.cell(row=r, column=6).value for r in range(2, promises_ws.max_row + 1)} == {"CLP", "USD"}
