"""Zones are derived at load and stored on each phone; a timezone column overrides; mixed zones are warned."""

from datetime import UTC, datetime
from pathlib import Path

from speechai.domain.settings import CallSettings
from speechai.domain.zones import CHILE_MOBILE_ZONES
from speechai.loader.service import load_batch
from speechai.store.models import Job

NOW_US = CallSettings(timezone="America/New_York", holidays_country="US")
HEADERS = ["Name", "Phone", "Timezone"]
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


async def _zones_by_name() -> dict[str, list[list[str]]]:
    return {j.name: [p.zones for p in j.phones] async for j in Job.find({"batch_id": "b1"})}


async def test_load_stores_zones_and_warns_when_the_batch_mixes_them(db, make_file, source,
                                                                     report_dir: Path) -> None:
    rows = [["Ann NY", "212 555 0123", ""], ["Bob NY", "(646) 555-0199", ""], ["Cid LA", "310-555-0123", ""],
            ["Dee Idaho", "208 555 0123", ""], ["Eve moved", "212 555 0177", "America/Chicago"],
            ["Fay typo", "212 555 0188", "Mars/Olympus"]]
    src = source(make_file(HEADERS, rows), format="generic", call_settings=NOW_US, default_region="US")
    summary = await load_batch(src, now=NOW, report_dir=report_dir)
    assert summary.ok and summary.jobs_created == 6
    zones = await _zones_by_name()
    assert zones["Ann NY"] == [["America/New_York"]]
    assert zones["Cid LA"] == [["America/Los_Angeles"]]
    assert zones["Dee Idaho"] == [["America/Boise", "America/Los_Angeles"]]
    assert zones["Eve moved"] == [["America/Chicago"]]  # the column overrides the number
    assert zones["Fay typo"] == [["America/New_York"]]  # a bad cell is warned and the number's zones kept
    warnings = {str(w.reason): w for w in summary.warnings}
    assert warnings["invalid_timezone"].value == "Mars/Olympus" and warnings["invalid_timezone"].column == "Timezone"
    assert warnings["mixed_time_zones"].detail == (
        "batch mixes time zones: America/New_York 3 people, America/Boise + America/Los_Angeles 1 person, "
        "America/Chicago 1 person, America/Los_Angeles 1 person (batch timezone America/New_York)")
    assert summary.report_path is not None and "mixed_time_zones" in summary.report_path.read_text()


async def test_chilean_batch_of_mobiles_and_landlines_is_not_mixed(db, make_file, source, report_dir: Path) -> None:
    rows = [["Ana", "991975219", ""], ["Luis", "221234567", ""], ["Rosa", "612223344", ""]]
    src = source(make_file(HEADERS, rows), format="generic")
    summary = await load_batch(src, now=NOW, report_dir=report_dir)
    zones = await _zones_by_name()
    assert zones == {"Ana": [sorted(CHILE_MOBILE_ZONES)], "Luis": [["America/Santiago"]],
                     "Rosa": [["America/Punta_Arenas"]]}
    # Rosa's Magallanes landline is the one placed outside Santiago
    assert [w.detail for w in summary.warnings] == [
        "batch mixes time zones: America/Punta_Arenas 1 person, America/Santiago 1 person "
        "(batch timezone America/Santiago)"]
