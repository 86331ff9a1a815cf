"""Reading, header matching, validation and grouping: files in, people and row errors out (no database)."""

from datetime import date
from pathlib import Path

import pytest
from loader_data import COLLECTION, RUT_A, RUT_B

from speechai.loader.columns import resolve
from speechai.loader.errors import MissingColumnsError, Reason, UnreadableFileError
from speechai.loader.service import parse_file
from speechai.loader.synthetic import WIDE_HEADERS, wide_collection_rows, write_xlsx


def test_collection_rows_grouped_per_person(make_file, source) -> None:
    path = make_file(COLLECTION, [
        [int(RUT_A), "Ana Díaz", 991975219, 50000, date(2026, 3, 10)],
        ["12.345.670-k", "Luis Soto", "56984876639", "$ 20.000", "15/03/2026"],
        [float(RUT_A), "Ana Díaz", "221234567", 70000.0, date(2026, 1, 31)],
        [RUT_A, "Ana Díaz", "+56 9 9197 5219", 30000, None],  # same mobile, spaced: merged
        [None, None, None, None, None],  # blank rows are not data
    ])
    result = parse_file(source(path))
    assert result.columns.format == "collection"
    assert result.rows == 4 and not result.errors
    ana = result.people["21373101-7"]
    assert ana.instalments == 3 and ana.rows == [2, 4, 5]
    assert [(p.number, p.kind) for p in ana.ordered_phones()] == [("+56991975219", "mobile"),
                                                                  ("+56221234567", "landline")]
    v = ana.variables("collection")
    assert v["total_debt"] == "150000" and v["instalments"] == "3"
    assert (v["first_due_date"], v["last_due_date"]) == ("2026-01-31", "2026-03-10")
    assert v["rut"] == "21373101-7" and v["name"] == "Ana Díaz"
    luis = result.people["12345670-K"]
    assert luis.variables("collection")["total_debt"] == "20000"
    assert [p.number for p in luis.ordered_phones()] == ["+56984876639"]


def test_phone_order_mobile_first_then_file_order(make_file, source) -> None:
    path = make_file(["RUT", "Nombre", "Teléfono Residencial", "Teléfono móvil", "Celular 2", "Monto"], [
        [RUT_A, "Ana", 221234567, 991975219, 981234567, 1000],
        [RUT_A, "Ana", 322123456, 961234567, 991975219, 1000],
    ])
    ana = parse_file(source(path)).people["21373101-7"]
    assert [p.number for p in ana.ordered_phones()] == [
        "+56991975219", "+56981234567", "+56961234567", "+56221234567", "+56322123456"]


def test_wide_export_headers_and_ignored_columns(make_file, source, tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "wide.xlsx", WIDE_HEADERS, wide_collection_rows(20, seed=3))
    result = parse_file(source(path, agent_variables=["Tramo mora"]))
    cols = result.columns
    assert {WIDE_HEADERS[i] for i in cols.fields.values()} == {
        "RUTS", "Nombre", "Saldo actualizado", "FechaVencimiento", "Días de retraso", "Origen Empresa",
        "Correo electrónico personal"}
    assert [WIDE_HEADERS[i] for i, _ in cols.phones] == ["Teléfono móvil", "Teléfono Residencial"]
    assert not result.errors and len(result.people) == 20
    person = next(iter(result.people.values()))
    assert {"company", "email", "days_late", "tramo_mora"} <= set(person.variables("collection"))
    assert "Sucursal" not in person.variables("collection")


def test_every_row_error_kind_reported_with_row_column_value(make_file, source) -> None:
    path = make_file(COLLECTION, [
        [RUT_A, "Ana", 991975219, 1000, "2026-03-10"],     # row 2 ok
        [213731018, "Bad Rut", 991975219, 1000, None],     # row 3 invalid RUT
        [RUT_B, "", 991975219, 1000, None],                # row 4 missing name
        ["151112226", "Carla", 981234567, "mil", None],     # row 5 bad amount
        ["16111222-1", "Diego", 961234567, 1000, "31/02/2026"],  # row 6 bad date (and bad RUT)
        ["17222333-6", "Eva", "99197521", 1000, None],     # row 7 no valid phone
    ])
    result = parse_file(source(path))
    got = {(e.row, e.column, e.reason) for e in result.errors}
    assert (3, "RUT", Reason.INVALID_RUT) in got
    assert (4, "NOMBRE", Reason.MISSING_NAME) in got
    assert (5, "MONTO", Reason.BAD_AMOUNT) in got
    assert (6, "FECHA_VENC", Reason.BAD_DATE) in got
    by_row = {e.row: e for e in result.errors}
    assert by_row[3].value == "213731018" and by_row[5].value == "mil"
    assert 2 not in by_row


def test_person_without_any_valid_phone_rejected_on_all_rows(make_file, source) -> None:
    path = make_file(COLLECTION, [
        [RUT_A, "Ana", "99197521", 1000, None],
        [RUT_A, "Ana", None, 2000, None],
        [RUT_B, "Luis", 991975219, 1000, None],
    ])
    result = parse_file(source(path))
    assert [(e.row, e.reason) for e in result.errors] == [(2, Reason.NO_VALID_PHONE), (3, Reason.NO_VALID_PHONE)]
    assert result.errors[0].value == "99197521"
    assert [(w.row, w.reason) for w in result.warnings] == [(2, Reason.INVALID_PHONE)]


def test_partial_mode_drops_whole_person_and_reports_their_other_rows(make_file, source) -> None:
    path = make_file(COLLECTION, [
        [RUT_A, "Ana", 991975219, 1000, None],
        [RUT_A, "Ana", 991975219, "??", None],
        [RUT_B, "Luis", 981234567, 1000, None],
    ])
    result = parse_file(source(path))
    result.reject_tainted_people()
    assert list(result.people) == ["12345670-K"]
    assert [(e.row, e.reason) for e in result.errors] == [(2, Reason.PERSON_REJECTED), (3, Reason.BAD_AMOUNT)]


def test_missing_required_column_lists_expected_and_found(make_file, source) -> None:
    path = make_file(["RUT", "NOMBRE", "MONTO", "Ciudad"], [[RUT_A, "Ana", 1000, "Talca"]])
    with pytest.raises(MissingColumnsError) as info:
        parse_file(source(path, format="collection"))
    err = info.value
    assert err.missing == ["phone"] and err.found == ["RUT", "NOMBRE", "MONTO", "Ciudad"]
    assert "Teléfono móvil" in str(err) and "Found headers: RUT, NOMBRE, MONTO, Ciudad" in str(err)


def test_column_mapping_renames_and_adds(make_file, source) -> None:
    path = make_file(["Documento", "Cliente", "Fono contacto", "Deuda total", "Sucursal"],
                     [[RUT_A, "Ana", 991975219, "5.000", "Talca"]])
    src = source(path, format="collection", columns={"Documento": "rut", "Cliente": "name",
                                                     "Fono contacto": "phone", "SUCURSAL": "branch"})
    result = parse_file(src)
    ana = result.people["21373101-7"]
    assert ana.variables("collection")["branch"] == "Talca"
    assert ana.variables("collection")["total_debt"] == "5000"


def test_marketing_and_generic_formats(make_file, source) -> None:
    mk = make_file(["nombre", "telefono", "email", "edad", "ciudad"],
                   [["María G.", "+56922222222", "maria@test.cl", 35, "Santiago"],
                    ["Sin Fono", "", "x@test.cl", 40, "Talca"]], kind="csv", delimiter=",")
    r = parse_file(source(mk))
    assert r.columns.format == "marketing"
    assert r.people["+56922222222"].variables("marketing") == {
        "name": "María G.", "email": "maria@test.cl", "age": "35", "city": "Santiago"}
    assert [(e.row, e.reason) for e in r.errors] == [(3, Reason.NO_VALID_PHONE)]
    gen = make_file(["name", "phone", "var1", "var2"], [["Carlos R.", "+56933333333", "A", "B"]])
    r = parse_file(source(gen))
    assert r.columns.format == "generic"
    assert r.people["+56933333333"].variables("generic") == {"name": "Carlos R.", "var1": "A", "var2": "B"}


def test_csv_semicolon_latin1_and_title_row(make_file, source, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("Informe de cartera;;;\nRUT;Nombre;Teléfono móvil;Saldo actualizado\n"
                     "21.373.101-7;José Muñoz;9 9197 5219;1.500\n".encode("latin-1"))
    r = parse_file(source(path))
    person = r.people["21373101-7"]
    assert person.name == "José Muñoz" and person.total == 1500
    assert r.errors == [] and person.rows == [3]


@pytest.mark.parametrize("content,name,needle", [
    (b"", "empty.xlsx", "empty"),
    (b"%PDF-1.4 not a sheet", "report.xlsx", "not a valid .xlsx"),
    (b"PK\x03\x04garbage-zip", "broken.xlsx", "not a readable .xlsx"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptionInfo".encode("utf-16-le"), "locked.xlsx", "password"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "old.xls", ".xls workbook"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "photo.png", "unsupported file type"),
    (b"\x00\x01\x02binary", "data.csv", "binary"),
    (b"\n\n  \n", "blank.csv", "no rows"),
])
def test_unreadable_files_get_clear_errors(tmp_path: Path, source, content: bytes, name: str,
                                           needle: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as info:
        parse_file(source(path))
    assert needle in str(info.value) and name in str(info.value)


def test_header_only_file_has_no_people(make_file, source) -> None:
    r = parse_file(source(make_file(COLLECTION, [])))
    assert r.rows == 0 and not r.people


def test_resolve_auto_detects_from_headers() -> None:
    assert resolve(["RUTS", "Nombre", "Teléfono móvil", "Saldo actualizado"], "auto").format == "collection"
    assert resolve(["Nombre", "Teléfono", "Email"], "auto").format == "marketing"
    assert resolve(["name", "phone", "x"], "auto").format == "generic"
