"""Constants shared by the loader tests."""

from datetime import UTC, datetime

from speechai.loader.synthetic import valid_rut

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, 09:00 in Santiago
COLLECTION = ["RUT", "NOMBRE", "TELEFONO", "MONTO", "FECHA_VENC"]
RUT_A = valid_rut(21373101)  # '213731017'
RUT_B = valid_rut(12345670)  # "12345670K"
RUT_C = valid_rut(15111222)
