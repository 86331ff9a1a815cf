"""Write the example spreadsheets (fictitious people only), one per loader format (docs/loader.md, Formats):

- ``debtors.xlsx``: 30 debtors, ~60 instalment rows, wide collection format;
- ``marketing.xlsx``: ``nombre, telefono, email, edad, ciudad``;
- ``generic.xlsx``: ``name, phone, var1, var2``;
- ``reminders.xlsx``: appointments (``RUT, Nombre, Teléfono, Fecha cita, Hora cita, Lugar``);
- ``surveys.xlsx``: ``Nombre, Celular, RUT, ID encuesta, Tema``.

    .venv/bin/python examples/make_example.py
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, time, timedelta
from pathlib import Path

import phonenumbers

from speechai.loader.synthetic import FIRST, LAST, WIDE_HEADERS, valid_rut, wide_collection_rows, write_xlsx

HERE = Path(__file__).resolve().parent
CITIES = ("Santiago", "Valparaíso", "Concepción", "La Serena", "Temuco", "Antofagasta", "Talca")
PLACES = ("Clínica Central, Av. Providencia 1234", "Centro Médico Ñuñoa, Irarrázaval 2100",
          "Sucursal Maipú, Av. Pajaritos 3050")
SURVEYS = (("ENC-2026-01", "satisfacción con la atención"), ("ENC-2026-02", "calidad del servicio técnico"))
# The demo campaign starts Monday 2 March 2026 (cli.DEMO_START): appointments fall in the two weeks after.
FIRST_APPOINTMENT = date(2026, 3, 5)


def _mobile(rng: random.Random) -> int:
    """A Chilean mobile number (9xxxxxxxx) the numbering plan allows."""
    while True:
        n = rng.randrange(920_000_000, 1_000_000_000)
        if phonenumbers.is_valid_number(phonenumbers.parse(str(n), "CL")):
            return n


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.choice(LAST)}"


def marketing_rows(people: int, seed: int = 11) -> Iterator[list[object]]:
    rng = random.Random(seed)
    for i in range(people):
        phone = _mobile(rng)
        # Exports mix formatted text and integer cells for phones.
        yield [_name(rng), f"+56 9 {str(phone)[1:5]} {str(phone)[5:]}" if i % 2 else phone,
               f"cliente{i}@example.com", rng.randrange(21, 75), rng.choice(CITIES)]


def generic_rows(people: int, seed: int = 13) -> Iterator[list[object]]:
    rng = random.Random(seed)
    for i in range(people):
        yield [_name(rng), f"+56{_mobile(rng)}", rng.choice(("plan hogar", "plan móvil", "plan empresa")),
               f"sucursal {i % 3 + 1}"]


def reminder_rows(people: int, seed: int = 17) -> Iterator[list[object]]:
    rng = random.Random(seed)
    for i in range(people):
        day = FIRST_APPOINTMENT + timedelta(days=i % 12)
        at = time(rng.randrange(8, 18), rng.choice((0, 15, 30, 45)))
        rut = valid_rut(15_000_000 + i * 977) if i % 3 else None  # the RUT is optional
        yield [rut, _name(rng), _mobile(rng), day, at, PLACES[i % len(PLACES)]]


def survey_rows(people: int, seed: int = 19) -> Iterator[list[object]]:
    rng = random.Random(seed)
    for i in range(people):
        survey_id, topic = SURVEYS[i % len(SURVEYS)]
        rut = valid_rut(16_000_000 + i * 613) if i % 2 else None
        yield [_name(rng), _mobile(rng), rut, survey_id, topic]


EXAMPLES: dict[str, tuple[list[str], list[list[object]], str]] = {
    "debtors.xlsx": (WIDE_HEADERS, list(wide_collection_rows(30, seed=2026, first_rut=11_000_000,
                                                             instalments=(1, 3))), "Deudores"),
    "marketing.xlsx": (["nombre", "telefono", "email", "edad", "ciudad"], list(marketing_rows(20)), "Clientes"),
    "generic.xlsx": (["name", "phone", "var1", "var2"], list(generic_rows(10)), "Contactos"),
    "reminders.xlsx": (["RUT", "Nombre", "Teléfono", "Fecha cita", "Hora cita", "Lugar"], list(reminder_rows(15)),
                       "Citas"),
    "surveys.xlsx": (["Nombre", "Celular", "RUT", "ID encuesta", "Tema"], list(survey_rows(15)), "Encuestas"),
}


def main() -> None:
    for name, (headers, rows, title) in EXAMPLES.items():
        path = write_xlsx(HERE / name, headers, rows, title=title)
        print(f"wrote {path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
