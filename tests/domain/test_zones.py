"""The debtor's local time: zones of a number, and the window held in every one of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechai.domain.settings import CallSettings, HourRange
from speechai.domain.windows import is_dialable, is_dialable_in, next_dialable_in
from speechai.domain.zones import (
    CHILE_MOBILE_ZONES,
    attempt_zones,
    dial_zones,
    next_open_in,
    parse_zone,
    phone_zones,
    push_into_zones,
    zone_mix,
    zones_of_number,
)

NY, LA, SCL, PA = (ZoneInfo(z) for z in ("America/New_York", "America/Los_Angeles", "America/Santiago",
                                          "America/Punta_Arenas"))
EVERY_DAY = [1, 2, 3, 4, 5, 6, 7]
US = CallSettings(timezone="America/New_York", holidays_country=None, days_of_week=EVERY_DAY,
                  allowed_hours=[HourRange(start=time(9), end=time(20))])
CL = CallSettings(timezone="America/Santiago", holidays_country=None, days_of_week=EVERY_DAY,
                  allowed_hours=[HourRange(start=time(9), end=time(20))])
NY_NUMBER, LA_NUMBER = "+12125550123", "+13105550123"
IDAHO_NUMBER = "+12085550123"  # area code 208: southern Idaho is Mountain time, the panhandle Pacific
PUNTA_ARENAS_LANDLINE, SANTIAGO_LANDLINE, CL_MOBILE = "+56612223344", "+56221234567", "+56961234567"


@dataclass
class _Phone:
    number: str
    bad: bool = False
    zones: list[str] = field(default_factory=list)


@dataclass
class _Attempt:
    phone: str
    local_zones: list[str] = field(default_factory=list)


# --- zones of a number ------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "zones"), [
    (NY_NUMBER, ("America/New_York",)),
    (LA_NUMBER, ("America/Los_Angeles",)),
    ("+13125550123", ("America/Chicago",)),
    (IDAHO_NUMBER, ("America/Boise", "America/Los_Angeles")),
    ("+16055550123", ("America/Denver", "America/North_Dakota/Center")),  # South Dakota: two zones
    (PUNTA_ARENAS_LANDLINE, ("America/Punta_Arenas",)),  # phonenumbers says Santiago: corrected
    ("+56672223344", ("America/Coyhaique",)),  # Aysén, UTC-3 all year since 2025
    (SANTIAGO_LANDLINE, ("America/Santiago",)),
    (CL_MOBILE, tuple(sorted(CHILE_MOBILE_ZONES))),  # a mobile may be anywhere in continental Chile
    ("+881612345678", ()),  # satellite: phonenumbers answers Etc/Unknown
    ("not a number", ()),
])
def test_zones_of_number(number: str, zones: tuple[str, ...]) -> None:
    assert zones_of_number(number) == zones


def test_stored_zones_win_and_the_batch_zone_always_applies() -> None:
    assert phone_zones(_Phone(LA_NUMBER), "America/New_York") == ("America/New_York", "America/Los_Angeles")
    # a loaded timezone column was stored on the phone: it replaces the number's own zones
    assert phone_zones(_Phone(LA_NUMBER, zones=["America/Chicago"]), "America/New_York") == (
        "America/New_York", "America/Chicago")
    assert phone_zones(_Phone("+881612345678"), "America/New_York") == ("America/New_York",)
    assert phone_zones(_Phone(NY_NUMBER), "America/New_York") == ("America/New_York",)


def test_dial_zones_follow_the_phone_dialed_next() -> None:
    phones = [_Phone(NY_NUMBER, bad=True), _Phone(LA_NUMBER)]
    assert dial_zones(phones, 0, US) == ("America/New_York", "America/Los_Angeles")
    assert dial_zones([_Phone(NY_NUMBER, bad=True)], 0, US) == ("America/New_York",)
    # an attempt written before zones were recorded is checked in its number's zones
    assert attempt_zones(_Attempt(LA_NUMBER), US) == ("America/New_York", "America/Los_Angeles")
    assert attempt_zones(_Attempt(LA_NUMBER, ["America/New_York"]), US) == ("America/New_York",)


def test_parse_zone_names_the_value() -> None:
    assert parse_zone(" America/Punta_Arenas ") == "America/Punta_Arenas"
    with pytest.raises(ValueError, match="'Mars/Olympus' is not an IANA time zone name"):
        parse_zone("Mars/Olympus")


def test_zone_mix_warning() -> None:
    sets = [("America/New_York",)] * 120 + [("America/Los_Angeles",)] * 40 + [()] * 5
    assert zone_mix(sets, "America/New_York") == (
        "batch mixes time zones: America/New_York 120 people, America/Los_Angeles 40 people "
        "(batch timezone America/New_York)")
    assert zone_mix([("America/New_York",)] * 3 + [()], "America/New_York") is None
    # Chilean mobiles place no one: a Santiago batch of mobiles and Santiago landlines is not mixed
    assert zone_mix([tuple(sorted(CHILE_MOBILE_ZONES)), ("America/Santiago",)], "America/Santiago") is None
    assert "America/Punta_Arenas 1 person" in (zone_mix([("America/Santiago",), ("America/Punta_Arenas",)],
                                                        "America/Santiago") or "")


# --- the window in every zone -----------------------------------------------------------------------


def _at(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def test_los_angeles_number_in_a_new_york_batch_waits_for_nine_in_los_angeles() -> None:
    zones = phone_zones(_Phone(LA_NUMBER), US.timezone)
    nine_ny = _at(NY, 2026, 3, 10, 9)
    assert is_dialable(US, nine_ny) and not is_dialable_in(US, nine_ny, zones)  # 06:00 in Los Angeles
    opens = next_dialable_in(US, nine_ny, zones)
    assert opens.astimezone(LA) == datetime(2026, 3, 10, 9, tzinfo=LA)
    assert opens.astimezone(NY).hour == 12
    # ...and it closes with New York's window: 20:00 New York is 17:00 in Los Angeles
    assert is_dialable_in(US, _at(NY, 2026, 3, 10, 19, 59), zones)
    assert not is_dialable_in(US, _at(NY, 2026, 3, 10, 20), zones)
    # the New York number is dialable at 09:00 New York
    assert is_dialable_in(US, nine_ny, phone_zones(_Phone(NY_NUMBER), US.timezone))


def test_a_number_of_two_zones_is_called_when_both_are_inside() -> None:
    denver = US.model_copy(update={"timezone": "America/Denver"})
    zones = phone_zones(_Phone(IDAHO_NUMBER), denver.timezone)
    nine_boise = _at(ZoneInfo("America/Boise"), 2026, 3, 10, 9)
    assert not is_dialable_in(denver, nine_boise, zones)  # 08:00 in the Idaho panhandle
    assert next_dialable_in(denver, nine_boise, zones) == _at(LA, 2026, 3, 10, 9)
    # the other end: 20:00 Boise closes it although it is 19:00 in the panhandle
    assert not is_dialable_in(denver, _at(ZoneInfo("America/Boise"), 2026, 3, 10, 20), zones)


def test_chile_dst_dates_in_this_tzdata() -> None:
    # Santiago: UTC-3 in summer, UTC-4 from the first Sunday of April (2026-04-05) to the first Sunday of
    # September (2026-09-06); Punta Arenas stays at UTC-3 all year.
    assert datetime(2026, 4, 4, 12, tzinfo=SCL).utcoffset() == timedelta(hours=-3)
    assert datetime(2026, 4, 5, 12, tzinfo=SCL).utcoffset() == timedelta(hours=-4)
    assert datetime(2026, 9, 5, 12, tzinfo=SCL).utcoffset() == timedelta(hours=-4)
    assert datetime(2026, 9, 6, 12, tzinfo=SCL).utcoffset() == timedelta(hours=-3)
    for month in (1, 4, 7, 10):
        assert datetime(2026, month, 15, 12, tzinfo=PA).utcoffset() == timedelta(hours=-3)


@pytest.mark.parametrize("number", [PUNTA_ARENAS_LANDLINE, CL_MOBILE])
def test_punta_arenas_winter_closes_an_hour_earlier_in_santiago_time(number: str) -> None:
    zones = phone_zones(_Phone(number), CL.timezone)
    winter_1930 = _at(SCL, 2026, 7, 15, 19, 30)  # 20:30 in Punta Arenas
    assert is_dialable(CL, winter_1930) and not is_dialable_in(CL, winter_1930, zones)
    assert is_dialable_in(CL, _at(SCL, 2026, 7, 15, 18, 59), zones)
    assert next_dialable_in(CL, winter_1930, zones) == _at(SCL, 2026, 7, 16, 9)
    # winter morning: 09:00 Santiago is 10:00 in Punta Arenas, both inside
    assert is_dialable_in(CL, _at(SCL, 2026, 7, 15, 9), zones)


@pytest.mark.parametrize("number", [PUNTA_ARENAS_LANDLINE, CL_MOBILE])
def test_punta_arenas_summer_is_santiago_time(number: str) -> None:
    zones = phone_zones(_Phone(number), CL.timezone)
    assert is_dialable_in(CL, _at(SCL, 2026, 1, 15, 19, 30), zones)
    assert not is_dialable_in(CL, _at(SCL, 2026, 1, 15, 20), zones)
    assert is_dialable_in(CL, _at(SCL, 2026, 1, 15, 9), zones)


def test_santiago_landline_keeps_the_whole_winter_window() -> None:
    zones = phone_zones(_Phone(SANTIAGO_LANDLINE), CL.timezone)
    assert is_dialable_in(CL, _at(SCL, 2026, 7, 15, 19, 30), zones)


def test_zones_that_never_overlap_raise_or_answer_none() -> None:
    one_hour = US.model_copy(update={"allowed_hours": [HourRange(start=time(9), end=time(10))]})
    zones = ("America/New_York", "Asia/Tokyo")
    with pytest.raises(ValueError, match="no instant dialable in all of America/New_York, Asia/Tokyo"):
        next_dialable_in(one_hour, _at(NY, 2026, 3, 10, 9), zones)
    assert next_open_in(one_hour, _at(NY, 2026, 3, 10, 9), zones) is None


def test_a_next_try_is_pushed_into_the_debtors_window_and_says_so() -> None:
    at = _at(NY, 2026, 3, 10, 10)
    pushed, reason = push_into_zones(US, at, [_Phone(LA_NUMBER)], 0, "no answer; retry at 10:00")
    assert pushed == _at(LA, 2026, 3, 10, 9)
    assert reason == ("no answer; retry at 10:00; in the debtor's time (America/New_York, America/Los_Angeles) "
                      f"at {pushed.isoformat()}")
    assert push_into_zones(US, at, [_Phone(NY_NUMBER)], 0, "r") == (at, "r")


# --- properties -------------------------------------------------------------------------------------

ZONES = ["America/New_York", "America/Los_Angeles", "America/Santiago", "America/Punta_Arenas",
         "Asia/Kolkata", "Europe/Madrid", "Australia/Lord_Howe", "Pacific/Chatham"]


@st.composite
def window_settings(draw: st.DrawFn) -> CallSettings:
    start = draw(st.integers(0, 22))
    end = draw(st.integers(start + 1, 23))
    days = sorted(draw(st.sets(st.integers(1, 7), min_size=1)))
    return CallSettings(timezone=draw(st.sampled_from(ZONES)), holidays_country=draw(st.sampled_from([None, "CL"])),
                        days_of_week=days, allowed_hours=[HourRange(start=time(start), end=time(end, 30))])


instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(window_settings(), instants, st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True),
       st.lists(st.floats(0, 1), min_size=5, max_size=5))
def test_next_dialable_in_is_the_earliest_instant_in_every_zone(s: CallSettings, at: datetime, zones: list[str],
                                                               fractions: list[float]) -> None:
    """Terminates (answer or ValueError), lands on an instant dialable in every zone, and no earlier one is."""
    try:
        got = next_dialable_in(s, at, zones)
    except ValueError:
        # nothing within the scan: then no sampled instant of the next week is dialable in all zones
        assert not any(is_dialable_in(s, at + timedelta(hours=h), zones) for h in range(0, 24 * 7, 1))
        return
    assert got >= at and is_dialable_in(s, got, zones)
    assert all(is_dialable(s.model_copy(update={"timezone": z}), got) for z in zones)
    if got > at:
        assert not is_dialable_in(s, got - timedelta(seconds=1), zones)
        for f in fractions:  # instants strictly before the answer are not dialable in all zones
            probe = at + (got - at) * f
            if probe < got:
                assert not is_dialable_in(s, probe, zones), probe


def test_toll_free_places_no_one() -> None:
    assert zones_of_number("+18005550123") == ()  # phonenumbers lists 42 zones for it
    assert phone_zones(_Phone("+18005550123"), US.timezone) == ("America/New_York",)
