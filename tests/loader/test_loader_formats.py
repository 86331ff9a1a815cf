"""The use-case formats (marketing, generic, reminder, survey): columns, row validation, the variables the
agent gets, the batch's use case, the example files and the marketing demo config, against the embedded
server."""

import io
import os
import re
import subprocess
import sys
import uuid
from datetime import date, time
from pathlib import Path

import pytest
from loader_data import NOW, RUT_A, RUT_B

from speechai.config import load_config
from speechai.domain.caller_id_rules import USE_CASES, batch_caller_id_violations
from speechai.domain.policy_types import Preset
from speechai.loader.columns import FORMAT_USE_CASE, FORMATS, resolve
from speechai.loader.command import load_configured
from speechai.loader.errors import LoadError, MissingColumnsError, Reason
from speechai.loader.people import FormatReason
from speechai.loader.service import load_batch, parse_file
from speechai.loader.spec import BatchSource
from speechai.store.db import connect
from speechai.store.models import Batch, Job

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MARKETING = ["nombre", "telefono", "email", "edad", "ciudad"]
REMINDER = ["RUT", "Nombre", "Teléfono", "Fecha cita", "Hora cita", "Lugar"]
SURVEY = ["Nombre", "Celular", "RUT", "ID encuesta", "Tema"]


def _errors(result) -> list[tuple[int, str, str, str]]:
    return [(e.row, e.column, e.value, str(e.reason)) for e in result.errors]


async def _jobs(batch_id: str = "b1") -> dict[str, Job]:
    return {j.person_key: j for j in await Job.find({"batch_id": batch_id}).to_list()}


# --- example files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fmt,people,variables", [
    ("marketing.xlsx", "marketing", 20, {"name", "email", "age", "city"}),
    ("generic.xlsx", "generic", 10, {"name", "var1", "var2"}),
    ("reminders.xlsx", "reminder", 15, {"name", "appointment_date", "appointment_time", "appointment_place"}),
    ("surveys.xlsx", "survey", 15, {"name", "survey_id", "survey_topic"}),
])
def test_example_files_load_clean_and_are_detected(name: str, fmt: str, people: int, variables: set[str]) -> None:
    for declared in ("auto", fmt):
        result = parse_file(BatchSource(file=EXAMPLES / name, account="a", batch_id="b", format=declared))
        assert result.columns.format == fmt
        assert (result.rows, len(result.people), result.errors, result.warnings) == (people, people, [], [])
        for person in result.people.values():
            got = person.variables(fmt)
            assert variables <= set(got) <= variables | {"rut"}, got
            assert all(isinstance(v, str) and v for v in got.values())


def test_every_format_implies_a_known_use_case() -> None:
    assert set(FORMAT_USE_CASE) == set(FORMATS)
    assert {u for u in FORMAT_USE_CASE.values() if u} == set(USE_CASES)
    assert FORMAT_USE_CASE["generic"] is None  # unknown purpose: not checked against the Chile rule


# --- marketing -------------------------------------------------------------------------------------------


async def test_marketing_loads_checked_variables_and_use_case(db, make_file, source, report_dir: Path) -> None:
    rows = [["María G.", "+56922222222", "Maria@Test.CL", 35, "Santiago"],
            ["Pedro Soto", 981234567, "", "40 años", ""],  # email and age are optional; '40 años' is 40
            ["Ana Díaz", "9 9197 5219", "ana@example.com", None, "Talca"]]
    summary = await load_batch(source(make_file(MARKETING, rows), format="marketing"), now=NOW,
                               report_dir=report_dir)
    assert summary.ok and summary.format == "marketing" and summary.jobs_created == 3
    jobs = await _jobs()
    assert jobs["+56922222222"].variables == {"name": "María G.", "email": "Maria@test.cl", "age": "35",
                                              "city": "Santiago"}
    assert jobs["+56981234567"].variables == {"name": "Pedro Soto", "age": "40"}
    assert jobs["+56991975219"].variables == {"name": "Ana Díaz", "email": "ana@example.com", "city": "Talca"}
    assert (await Batch.get("b1")).use_case == "marketing"


@pytest.mark.parametrize("email,age,column,value,reason,detail", [
    ("maria@test", 35, "email", "maria@test", FormatReason.BAD_EMAIL, "not an email address"),
    ("maria test@x.cl", 35, "email", "maria test@x.cl", FormatReason.BAD_EMAIL, "not an email address"),
    ("maria@@test.cl", 35, "email", "maria@@test.cl", FormatReason.BAD_EMAIL, "not an email address"),
    ("maria@test.cl", "treinta", "edad", "treinta", FormatReason.BAD_AGE, "whole number"),
    ("maria@test.cl", 35.5, "edad", "35.5", FormatReason.BAD_AGE, "whole number"),
    ("maria@test.cl", 130, "edad", "130", FormatReason.BAD_AGE, "0 to 120, got 130"),
    ("maria@test.cl", -2, "edad", "-2", FormatReason.BAD_AGE, "0 to 120, got -2"),
])
async def test_marketing_bad_rows_are_named_and_nothing_is_written(db, make_file, source, report_dir: Path,
                                                                   email: object, age: object, column: str,
                                                                   value: str, reason: FormatReason,
                                                                   detail: str) -> None:
    rows = [["Luis Soto", "+56933333333", "luis@test.cl", 50, "Talca"],
            ["María G.", "+56922222222", email, age, "Santiago"]]
    summary = await load_batch(source(make_file(MARKETING, rows)), now=NOW, report_dir=report_dir)
    assert not summary.ok and summary.format == "marketing" and summary.jobs_created == 0
    [err] = summary.rejected
    assert (err.row, err.column, err.value, err.reason) == (3, column, value, reason)
    assert detail in err.detail
    assert await Job.find({}).count() == 0 and await Batch.get("b1") is None
    assert str(reason) in summary.report_path.read_text(encoding="utf-8-sig")


# --- generic ---------------------------------------------------------------------------------------------


async def test_generic_passes_every_other_column(db, make_file, source, report_dir: Path) -> None:
    rows = [["Carlos R.", "+56933333333", "A", "B"], ["Sin Fono", "", "C", "D"]]
    path = make_file(["name", "phone", "var1", "var2"], rows)
    summary = await load_batch(source(path), now=NOW, report_dir=report_dir)
    assert not summary.ok and [(e.row, str(e.reason)) for e in summary.rejected] == [(3, "no_valid_phone")]
    summary = await load_batch(source(path, accept_partial=True), now=NOW, report_dir=report_dir)
    assert summary.ok and summary.format == "generic" and summary.jobs_created == 1
    assert (await _jobs())["+56933333333"].variables == {"name": "Carlos R.", "var1": "A", "var2": "B"}
    assert (await Batch.get("b1")).use_case is None


# --- reminder --------------------------------------------------------------------------------------------


async def test_reminder_loads_appointments(db, make_file, source, report_dir: Path) -> None:
    rows = [[RUT_A, "Ana Díaz", 991975219, date(2026, 3, 10), time(9, 30), "Clínica Central"],
            [None, "Luis Soto", "+56981234567", "31/03/2026", "10.30 hrs", ""],  # text date and time; no RUT
            [None, "Pedro Pérez", "+56922222222", "2026-04-02", "3:15 PM", "Sede Ñuñoa"],
            [None, "Rosa Muñoz", "+56933333333", 46113, 0.4375, None],  # serial date, time as a day fraction
            [RUT_A, "Ana Díaz", 221234567, date(2026, 3, 10), time(9, 30), ""]]  # same person and appointment
    summary = await load_batch(source(make_file(REMINDER, rows)), now=NOW, report_dir=report_dir)
    assert summary.ok and summary.format == "reminder" and (summary.people, summary.jobs_created) == (4, 4)
    jobs = await _jobs()
    ana = jobs["21373101-7"]
    assert ana.variables == {"name": "Ana Díaz", "rut": "21373101-7", "appointment_date": "2026-03-10",
                             "appointment_time": "09:30", "appointment_place": "Clínica Central"}
    assert [p.number for p in ana.phones] == ["+56991975219", "+56221234567"]
    assert jobs["+56981234567"].variables == {"name": "Luis Soto", "appointment_date": "2026-03-31",
                                              "appointment_time": "10:30"}
    assert jobs["+56922222222"].variables["appointment_time"] == "15:15"
    assert (jobs["+56933333333"].variables["appointment_date"], jobs["+56933333333"].variables["appointment_time"]) \
        == ("2026-04-01", "10:30")
    assert (await Batch.get("b1")).use_case == "reminder"


@pytest.mark.parametrize("day,at,column,value,reason", [
    ("mañana", time(9, 30), "Fecha cita", "mañana", Reason.BAD_DATE),
    ("31/02/2026", time(9, 30), "Fecha cita", "31/02/2026", Reason.BAD_DATE),
    (None, time(9, 30), "Fecha cita", "", Reason.BAD_DATE),
    (date(2026, 3, 10), "después de almuerzo", "Hora cita", "después de almuerzo", FormatReason.BAD_TIME),
    (date(2026, 3, 10), "25:00", "Hora cita", "25:00", FormatReason.BAD_TIME),
    (date(2026, 3, 10), "10", "Hora cita", "10", FormatReason.BAD_TIME),  # 10 what? ambiguous
    (date(2026, 3, 10), None, "Hora cita", "", FormatReason.BAD_TIME),
])
def test_reminder_bad_date_or_time_names_row_column_value(make_file, source, day: object, at: object,
                                                          column: str, value: str, reason: str) -> None:
    rows = [[RUT_B, "Luis Soto", 981234567, date(2026, 3, 11), time(11, 0), "Sede"],
            [RUT_A, "Ana Díaz", 991975219, day, at, "Clínica"]]
    result = parse_file(source(make_file(REMINDER, rows)))
    assert [(r, c, v, s) for r, c, v, s in _errors(result)] == [(3, column, value, str(reason))]
    assert "21373101-7" in result.people and result.people["21373101-7"].rejected


def test_reminder_two_appointments_for_one_person_are_refused(make_file, source) -> None:
    rows = [[RUT_A, "Ana Díaz", 991975219, date(2026, 3, 10), time(9, 30), ""],
            [RUT_A, "Ana Díaz", 991975219, date(2026, 3, 12), time(16, 0), ""]]
    result = parse_file(source(make_file(REMINDER, rows), accept_partial=True))
    [err] = result.errors
    assert (err.row, err.column, err.value, err.reason) == (3, "Fecha cita", "2026-03-12 16:00",
                                                            FormatReason.APPOINTMENT_CONFLICT)
    assert "2026-03-10 09:30 on row 2" in err.detail and "RUT 21373101-7" in err.detail
    result.reject_tainted_people()
    assert result.people == {} and [str(e.reason) for e in result.errors] == ["person_rejected",
                                                                              "appointment_conflict"]


def test_reminder_without_a_time_column_is_refused_naming_it(make_file, source) -> None:
    path = make_file(["Nombre", "Teléfono", "Fecha cita", "Lugar"], [["Ana", 991975219, date(2026, 3, 10), "X"]])
    with pytest.raises(MissingColumnsError) as info:
        parse_file(source(path, format="reminder"))
    assert info.value.missing == ["appointment_time"] and "Hora cita" in str(info.value)
    assert "Found headers: Nombre, Teléfono, Fecha cita, Lugar" in str(info.value)


# --- survey ----------------------------------------------------------------------------------------------


async def test_survey_loads_id_and_topic(db, make_file, source, report_dir: Path) -> None:
    rows = [["Ana Díaz", 991975219, RUT_A, "ENC-7", "satisfacción"],
            ["Luis Soto", 981234567, None, None, "calidad"],  # a topic is enough
            ["Pedro Pérez", 922222222, None, "ENC-8", None]]  # so is an id
    summary = await load_batch(source(make_file(SURVEY, rows)), now=NOW, report_dir=report_dir)
    assert summary.ok and summary.format == "survey" and summary.jobs_created == 3
    jobs = await _jobs()
    assert jobs["21373101-7"].variables == {"name": "Ana Díaz", "rut": "21373101-7", "survey_id": "ENC-7",
                                            "survey_topic": "satisfacción"}
    assert jobs["+56981234567"].variables == {"name": "Luis Soto", "survey_topic": "calidad"}
    assert jobs["+56922222222"].variables == {"name": "Pedro Pérez", "survey_id": "ENC-8"}
    assert (await Batch.get("b1")).use_case == "survey"


def test_survey_row_without_id_or_topic_and_bad_rut_are_named(make_file, source) -> None:
    rows = [["Ana Díaz", 991975219, RUT_A, None, "  "], ["Luis Soto", 981234567, "12345678-0", "ENC-7", None]]
    result = parse_file(source(make_file(SURVEY, rows)))
    assert [(r, c, s) for r, c, _, s in _errors(result)] == [(2, "ID encuesta, Tema", "missing_survey"),
                                                             (3, "RUT", "invalid_rut")]
    assert result.errors[1].value == "12345678-0"


def test_survey_over_long_topic_is_reported_once(make_file, source) -> None:
    result = parse_file(source(make_file(SURVEY, [["Ana Díaz", 991975219, None, None, "x" * 2000]])))
    assert [(r, c, s) for r, c, _, s in _errors(result)] == [(2, "Tema", "too_long")]


def test_survey_without_survey_columns_is_refused(make_file, source) -> None:
    with pytest.raises(MissingColumnsError) as info:
        parse_file(source(make_file(["Nombre", "Celular"], [["Ana", 991975219]]), format="survey"))
    assert info.value.missing == ["survey_id or survey_topic"] and "ID encuesta" in str(info.value)


def test_auto_detection_of_the_new_formats() -> None:
    assert resolve(REMINDER, "auto").format == "reminder"  # a RUT does not make appointments debts
    assert resolve(SURVEY, "auto").format == "survey"
    assert resolve(["Nombre", "Teléfono", "Tema"], "auto").format == "generic"  # 'Tema' alone is no survey
    assert resolve(["RUT", "Nombre", "Teléfono", "Monto", "Fecha", "Hora"], "auto").format == "collection"
    assert resolve(MARKETING, "auto").format == "marketing"


# --- use case, and the marketing demo config ---------------------------------------------------------------


async def test_declared_use_case_wins_over_the_format(db, make_file, source, report_dir: Path) -> None:
    path = make_file(["name", "phone", "var1"], [["Carlos R.", "+56933333333", "A"]])
    await load_batch(source(path, use_case="survey"), now=NOW, report_dir=report_dir)
    assert (await Batch.get("b1")).use_case == "survey"
    with pytest.raises(ValueError, match="use_case"):
        BatchSource(file=path, account="a", batch_id="b", use_case="promo")


async def test_format_use_case_is_held_to_the_chile_rule_at_load(db, make_file, source, report_dir: Path) -> None:
    path = make_file(MARKETING, [["María G.", "+56922222222", "maria@test.cl", 35, "Santiago"]])
    with pytest.raises(LoadError, match="CL-809") as info:
        await load_batch(source(path, from_number="+566001234567"), now=NOW, report_dir=report_dir)
    assert "+566001234567" in str(info.value) and await Batch.get("b1") is None
    # Declared otherwise (a survey of existing customers), the 600 number is the compliant one.
    summary = await load_batch(source(path, from_number="+566001234567", use_case="survey"), now=NOW,
                               report_dir=report_dir)
    assert summary.ok and (await Batch.get("b1")).use_case == "survey"


async def test_marketing_demo_config_loads_with_a_compliant_caller_id(mongo_uri: str, tmp_path: Path) -> None:
    dbname = f"t_{uuid.uuid4().hex[:10]}"
    config = load_config(EXAMPLES / "marketing.toml", environ={"SPEECHAI_MONGO_URI": mongo_uri,
                                                               "SPEECHAI_MONGO_DATABASE": dbname,
                                                               "SPEECHAI_DATA_DIR": str(tmp_path / "var")})
    [src] = config.batches
    assert src.file == EXAMPLES / "marketing.xlsx" and src.format == "marketing"
    # What the run-time check will see (docs/dialing.md): marketing from the batch's own 809 number.
    assert batch_caller_id_violations(use_case=src.use_case_for(src.format), pool=[], from_number=src.from_number,
                                      default_from_number=config.retell.from_number,
                                      preset=src.call_settings.preset) == []
    assert config.retell.from_number.startswith("+56809") and src.from_number.startswith("+56809")
    out = io.StringIO()
    assert await load_configured(config, out=out) == 0, out.getvalue()
    assert "batch demo-marketing (marketing): loaded" in out.getvalue() and "jobs created 20" in out.getvalue()
    client = await connect(mongo_uri, dbname)  # the command closed its own client
    try:
        batch = await Batch.get("demo-marketing")
        assert (batch.use_case, batch.from_number) == ("marketing", "+568091234567")
        assert batch.call_settings.preset == Preset.CHILE
        jobs = await Job.find({"batch_id": "demo-marketing"}).to_list()
        assert len(jobs) == 20 and all({"email", "age", "city"} <= set(j.variables) for j in jobs)
    finally:
        await client.drop_database(dbname)
        await client.close()


def test_marketing_demo_runs_end_to_end_against_the_simulator(tmp_path: Path) -> None:
    """``speechai demo --config examples/marketing.toml`` as a process: loaded, dialed from the 809 number
    (a non-compliant batch would be paused before its first dial), every person finished."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPEECHAI_", "RETELL_"))}
    env.update(PYTHONPATH=str(EXAMPLES.parent), SPEECHAI_DATA_DIR=str(tmp_path / "var"))
    out = subprocess.run([sys.executable, "-m", "speechai.cli", "demo", "--config", str(EXAMPLES / "marketing.toml"),
                          "--speed", "3000"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded demo-marketing: 20 people, 20 jobs, 0 rejected rows" in out.stdout
    placed = re.search(r"calls placed: (\d+)", out.stdout)
    assert placed and int(placed.group(1)) >= 20, out.stdout[-2000:]
    summary = re.search(r"people/jobs: 20 \(([^)]*)\)", out.stdout)
    assert summary and set(re.findall(r"([a-z_]+) \d+", summary.group(1))) <= {"done", "failed", "excluded"}
    log = (tmp_path / "var" / "demo" / "speechai.log").read_text()
    assert "batch_paused" not in log and "CL-809" not in log
