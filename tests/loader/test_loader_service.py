"""Loads against the real driver and the embedded server: jobs written, idempotence, all-or-nothing."""

import csv
from datetime import timedelta
from pathlib import Path

import pytest
from loader_data import COLLECTION, NOW, RUT_A, RUT_B, RUT_C

from speechai.domain.settings import CallSettings
from speechai.loader import service
from speechai.loader.errors import LoadError, Reason
from speechai.loader.service import clean_abandoned_loads, load_batch
from speechai.loader.synthetic import WIDE_HEADERS, wide_collection_rows, write_xlsx
from speechai.store.models import Account, Batch, BatchStatus, Job, JobState

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "debtors.xlsx"
ROWS = [
    [int(RUT_A), "Ana Díaz", 991975219, 50000, "2026-03-10"],
    [RUT_B, "Luis Soto", "56984876639", 20000, "2026-03-15"],
    [RUT_A, "Ana Díaz", 221234567, 70000, "2026-01-31"],
]


async def _jobs(batch_id: str = "b1") -> list[Job]:
    return await Job.find({"batch_id": batch_id}).sort("person_key").to_list()


async def test_load_writes_one_job_per_person(db, make_file, source, report_dir: Path) -> None:
    settings = CallSettings(max_attempts=3)
    src = source(make_file(COLLECTION, ROWS), call_settings=settings, payment_deadline_days=5,
                 agent_id="agent_x", name="Marzo")
    summary = await load_batch(src, now=NOW, report_dir=report_dir)
    assert summary.ok and (summary.rows, summary.people, summary.jobs_created) == (3, 2, 2)
    assert summary.report_path is None and summary.rejected == []
    luis, ana = await _jobs()
    assert ana.dedup_key == "acme:b1:21373101-7" and ana.person_key == "21373101-7"
    assert ana.national_id == "21373101-7" and ana.name == "Ana Díaz"
    assert [(p.number, p.kind) for p in ana.phones] == [("+56991975219", "mobile"), ("+56221234567", "landline")]
    assert ana.variables["total_debt"] == "120000" and ana.variables["instalments"] == "2"
    assert ana.variables["payment_deadline"] == "2026-03-07"  # 09:00 in Santiago on 2 March, + 5 days
    assert all(isinstance(v, str) for v in ana.variables.values())
    assert ana.state == JobState.PENDING and ana.version == 0
    assert ana.next_try_at == NOW and ana.created_at == NOW and ana.updated_at == NOW
    assert luis.person_key == "12345670-K"
    batch = await Batch.get("b1")
    assert batch is not None and batch.status == BatchStatus.ACTIVE and batch.status_reason is None
    assert batch.call_settings.max_attempts == 3 and batch.agent_id == "agent_x" and batch.name == "Marzo"
    assert await Account.get("acme") is not None
    # Dates were written by insert/replace: range queries see them (DESIGN.md section 6).
    assert await Job.find({"next_try_at": {"$lte": NOW}}).count() == 2


async def test_payment_deadline_uses_batch_timezone(db, make_file, source, report_dir: Path) -> None:
    late_evening = NOW.replace(hour=2)  # 2 March 02:00 UTC is still 1 March in Santiago
    src = source(make_file(COLLECTION, ROWS[:1]), payment_deadline_days=0)
    await load_batch(src, now=late_evening, report_dir=report_dir)
    assert (await _jobs())[0].variables["payment_deadline"] == "2026-03-01"


async def test_reload_same_file_creates_nothing_new(db, make_file, source, report_dir: Path) -> None:
    path = make_file(COLLECTION, ROWS)
    first = await load_batch(source(path), now=NOW, report_dir=report_dir)
    again = await load_batch(source(path), now=NOW + timedelta(hours=1), report_dir=report_dir)
    assert first.jobs_created == 2
    assert again.ok and again.jobs_created == 0 and again.already_present == 2
    assert len(await _jobs()) == 2


async def test_reload_of_paused_batch_adds_only_new_people_and_keeps_status(
        db, make_file, source, report_dir: Path) -> None:
    await load_batch(source(make_file(COLLECTION, ROWS)), now=NOW, report_dir=report_dir)
    batch = await Batch.get("b1")
    batch.status, batch.status_reason = BatchStatus.PAUSED, "paused by operator"
    await batch.replace()
    more = [*ROWS, [RUT_C, "Carla Rojas", 981234567, 1000, None]]
    summary = await load_batch(source(make_file(COLLECTION, more)), now=NOW, report_dir=report_dir)
    assert (summary.jobs_created, summary.already_present) == (1, 2)
    batch = await Batch.get("b1")
    assert batch.status == BatchStatus.PAUSED and batch.status_reason == "paused by operator"
    assert [j.person_key for j in await _jobs()] == ["12345670-K", "15111222-6", "21373101-7"]


async def test_all_or_nothing_by_default(db, make_file, source, report_dir: Path) -> None:
    bad = [*ROWS, ["11111111-2", "Nadie", 991975219, 1000, None]]
    summary = await load_batch(source(make_file(COLLECTION, bad)), now=NOW, report_dir=report_dir)
    assert not summary.ok and summary.jobs_created == 0
    assert [(e.row, e.column, e.value, e.reason) for e in summary.rejected] == [
        (5, "RUT", "11111111-2", Reason.INVALID_RUT)]
    assert await Job.count() == 0 and await Batch.get("b1") is None
    rows = list(csv.reader(summary.report_path.open(encoding="utf-8-sig")))
    assert rows[0] == ["kind", "row", "column", "value", "reason", "detail"]
    assert rows[1][:5] == ["rejected", "5", "RUT", "11111111-2", "invalid_rut"]
    assert summary.to_dict()["rejected_rows"] == 1


async def test_accept_partial_loads_valid_people_and_reports_the_rest(
        db, make_file, source, report_dir: Path) -> None:
    bad = [*ROWS, ["11111111-2", "Nadie", 991975219, 1000, None], [RUT_C, "Carla", 981234567, "x", None]]
    summary = await load_batch(source(make_file(COLLECTION, bad), accept_partial=True), now=NOW,
                               report_dir=report_dir)
    assert summary.ok and summary.jobs_created == 2
    assert {(e.row, e.reason) for e in summary.rejected} == {(5, Reason.INVALID_RUT), (6, Reason.BAD_AMOUNT)}
    assert summary.report_path is not None and summary.report_path.exists()
    assert [j.person_key for j in await _jobs()] == ["12345670-K", "21373101-7"]


async def test_failure_mid_insert_leaves_nothing(db, make_file, source, report_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "INSERT_CHUNK", 10)
    path = write_xlsx(report_dir.parent / "wide.xlsx", WIDE_HEADERS, wide_collection_rows(35))
    real_insert = service._insert_chunk
    calls = 0

    async def failing(jobs):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk full")
        return await real_insert(jobs)

    monkeypatch.setattr(service, "_insert_chunk", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert calls == 3 and await Job.count() == 0 and await Batch.get("b1") is None
    monkeypatch.setattr(service, "_insert_chunk", real_insert)
    summary = await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert summary.jobs_created == 35 and await Job.count() == 35


async def test_failure_during_reload_keeps_earlier_people(db, make_file, source, report_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    await load_batch(source(make_file(COLLECTION, ROWS)), now=NOW, report_dir=report_dir)
    more = [*ROWS, [RUT_C, "Carla Rojas", 981234567, 1000, None]]

    async def boom(batch, previous):
        raise RuntimeError("crash before commit")

    monkeypatch.setattr(service, "_finish", boom)
    with pytest.raises(RuntimeError):
        await load_batch(source(make_file(COLLECTION, more)), now=NOW, report_dir=report_dir)
    assert [j.person_key for j in await _jobs()] == ["12345670-K", "21373101-7"]
    assert (await Batch.get("b1")).status == BatchStatus.ACTIVE


async def test_load_killed_midway_is_cleaned_by_next_load(db, make_file, source, report_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async def killed(batch, previous):
        raise RuntimeError("kill -9")

    async def no_rollback(batch_id, load_id):  # the process died: nothing ran after the crash
        return None

    monkeypatch.setattr(service, "_finish", killed)
    monkeypatch.setattr(service, "_rollback", no_rollback)
    path = make_file(COLLECTION, ROWS)
    with pytest.raises(RuntimeError):
        await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert (await Batch.get("b1")).status == BatchStatus.LOADING and await Job.count() == 2
    monkeypatch.undo()
    summary = await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert summary.jobs_created == 2 and summary.already_present == 0
    assert (await Batch.get("b1")).status == BatchStatus.ACTIVE and await Job.count() == 2


async def test_clean_abandoned_loads_at_startup(db, make_file, source, report_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    await load_batch(source(make_file(COLLECTION, ROWS), batch_id="kept"), now=NOW, report_dir=report_dir)

    async def killed(batch, previous):
        raise RuntimeError("kill -9")

    async def no_rollback(batch_id, load_id):
        return None

    monkeypatch.setattr(service, "_finish", killed)
    monkeypatch.setattr(service, "_rollback", no_rollback)
    for batch_id in ("new", "kept"):
        more = [*ROWS, [RUT_C, "Carla Rojas", 981234567, 1000, None]]
        with pytest.raises(RuntimeError):
            await load_batch(source(make_file(COLLECTION, more), batch_id=batch_id,
                                    allow_duplicates_across_batches=True), now=NOW, report_dir=report_dir)
    monkeypatch.undo()
    assert await clean_abandoned_loads() == 2
    assert await Batch.get("new") is None and await Job.find({"batch_id": "new"}).count() == 0
    kept = await Batch.get("kept")
    assert kept.status == BatchStatus.ACTIVE
    assert [j.person_key for j in await _jobs("kept")] == ["12345670-K", "21373101-7"]
    assert await clean_abandoned_loads() == 0


async def test_person_active_in_other_batch_skipped_unless_allowed(
        db, make_file, source, report_dir: Path) -> None:
    await load_batch(source(make_file(COLLECTION, ROWS[:1]), batch_id="feb"), now=NOW, report_dir=report_dir)
    summary = await load_batch(source(make_file(COLLECTION, ROWS), batch_id="mar"), now=NOW,
                               report_dir=report_dir)
    assert summary.ok and summary.jobs_created == 1 and summary.duplicates == [("21373101-7", "feb")]
    assert summary.duplicates_skipped == 1
    report = summary.report_path.read_text(encoding="utf-8-sig")
    assert "active_in_other_batch" in report and "feb" in report
    allowed = await load_batch(source(make_file(COLLECTION, ROWS), batch_id="apr",
                                      allow_duplicates_across_batches=True), now=NOW, report_dir=report_dir)
    assert allowed.jobs_created == 2 and allowed.duplicates_skipped == 0


async def test_person_done_elsewhere_is_not_a_duplicate(db, make_file, source, report_dir: Path) -> None:
    await load_batch(source(make_file(COLLECTION, ROWS[:1]), batch_id="feb"), now=NOW, report_dir=report_dir)
    job = (await _jobs("feb"))[0]
    job.state = JobState.DONE
    await job.replace()
    summary = await load_batch(source(make_file(COLLECTION, ROWS), batch_id="mar"), now=NOW,
                               report_dir=report_dir)
    assert summary.jobs_created == 2 and summary.duplicates_skipped == 0


async def test_batch_of_other_account_refused(db, make_file, source, report_dir: Path) -> None:
    path = make_file(COLLECTION, ROWS)
    await load_batch(source(path), now=NOW, report_dir=report_dir)
    with pytest.raises(LoadError, match="belongs to account"):
        await load_batch(source(path, account="other"), now=NOW, report_dir=report_dir)


async def test_marketing_csv_keys_people_by_phone(db, make_file, source, report_dir: Path) -> None:
    path = make_file(["nombre", "telefono", "email", "edad", "ciudad"],
                     [["María G.", "+56922222222", "maria@test.cl", 35, "Santiago"]], kind="csv")
    summary = await load_batch(source(path, batch_id="mk"), now=NOW, report_dir=report_dir)
    assert summary.format == "marketing" and summary.jobs_created == 1
    job = (await _jobs("mk"))[0]
    assert job.person_key == "+56922222222" and job.national_id is None
    assert job.dedup_key == "acme:mk:+56922222222" and job.variables["city"] == "Santiago"


async def test_example_file_loads_cleanly(db, source, report_dir: Path) -> None:
    summary = await load_batch(source(EXAMPLE, format="collection"), now=NOW, report_dir=report_dir)
    assert summary.ok and not summary.rejected and not summary.warnings
    assert summary.people == 30 and summary.rows >= 55 and summary.jobs_created == 30
