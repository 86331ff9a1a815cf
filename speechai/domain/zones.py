"""The debtor's local time: which IANA zones a phone number may be in.

A number's zones come from a loaded ``timezone`` column when present, else from libphonenumber's
prefix table (``phonenumbers.timezone``), corrected for Chile, whose table maps every +56 number to
``America/Santiago``:

- landlines of area code 61 (Magallanes) are in ``America/Punta_Arenas`` and of area code 67 (Aysén) in
  ``America/Coyhaique``: both UTC−3 all year, an hour ahead of Santiago in its winter;
- mobiles (+56 9) say nothing about where their owner lives: they get every continental zone
  (Santiago, Punta Arenas, Coyhaique), the strict reading the window rule takes for unknown locations.

A number the table does not place (``Etc/Unknown``, or a toll-free range spanning dozens of zones) has
no zones of its own. A dial's window must hold in the batch's timezone and in every possible zone of
the number (``window_zones``); docs/policy.md, "Debtor's local time", says why the batch's zone stays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Protocol
from zoneinfo import available_timezones

import phonenumbers
from phonenumbers import timezone as pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA

from speechai.domain.phones import next_usable_phone
from speechai.domain.settings import CallSettings
from speechai.domain.windows import next_dialable_in

UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers for a number it cannot place
CHILE_MOBILE_ZONES = ("America/Santiago", "America/Punta_Arenas", "America/Coyhaique")
_CHILE_AREA_ZONES = {"61": "America/Punta_Arenas", "67": "America/Coyhaique"}
MAX_NUMBER_ZONES = 4  # more possible zones than this (toll-free, non-geographic) means no known location
MAX_ZONE_CHARS = 64  # longest IANA name is 32 characters


class AttemptView(Protocol):
    @property
    def phone(self) -> str: ...

    @property
    def local_zones(self) -> list[str]: ...


class ZonedPhone(Protocol):
    @property
    def number(self) -> str: ...

    @property
    def bad(self) -> bool: ...

    @property
    def zones(self) -> list[str]: ...


def zones_of_parsed(num: phonenumbers.PhoneNumber, ntype: int | None = None) -> tuple[str, ...]:
    """Possible zones of a parsed number, sorted; empty when it cannot be placed. ``ntype``: its
    ``phonenumbers.number_type`` when the caller has it already (the slow part of the lookup)."""
    if num.country_code == 56:
        national = str(num.national_number)
        if national.startswith("9"):
            return tuple(sorted(CHILE_MOBILE_ZONES))
        if (zone := _CHILE_AREA_ZONES.get(national[:2])) is not None:
            return (zone,)
    found = [z for z in _table_zones(num, ntype) if z != UNKNOWN_ZONE]
    if len(found) > MAX_NUMBER_ZONES:  # e.g. a toll-free +1 800 number: "all of NANP" places no one
        return ()
    return tuple(sorted(found))


def _table_zones(num: phonenumbers.PhoneNumber, ntype: int | None) -> tuple[str, ...]:
    """``phonenumbers.timezone.time_zones_for_number``, reusing a known number type."""
    if ntype is None:
        return tuple(pn_timezone.time_zones_for_number(num))
    if ntype == phonenumbers.PhoneNumberType.UNKNOWN:
        return ()
    if not phonenumbers.is_number_type_geographical(ntype, num.country_code):
        return tuple(TIMEZONE_DATA.get(str(num.country_code), ()))  # the country's zones
    return tuple(pn_timezone.time_zones_for_geographical_number(num))


@lru_cache(maxsize=4096)
def zones_of_number(e164: str) -> tuple[str, ...]:
    """Possible zones of an E.164 number (e.g. one stored before zones were recorded)."""
    try:
        num = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    return zones_of_parsed(num)


def parse_zone(value: str) -> str:
    """A loaded timezone cell as an IANA name; ValueError naming the value otherwise."""
    text = value.strip()
    if text not in _known_zones():
        shown = text if len(text) <= MAX_ZONE_CHARS else text[:MAX_ZONE_CHARS] + "…"
        raise ValueError(f"timezone {shown!r} is not an IANA time zone name (e.g. 'America/New_York')")
    return text


def window_zones(batch_zone: str, number_zones: Sequence[str]) -> tuple[str, ...]:
    """The zones a dial's window must hold in: the batch's own (its operating hours, and the scheduler's
    batch-level check) and every possible zone of the number, batch zone first, no repeats."""
    return tuple(dict.fromkeys((batch_zone, *number_zones)))


def phone_zones(phone: ZonedPhone, batch_zone: str) -> tuple[str, ...]:
    """``window_zones`` for ``phone``: its stored zones, else derived from the number (older jobs)."""
    return window_zones(batch_zone, tuple(phone.zones) or zones_of_number(phone.number))


def dial_zones(phones: Sequence[ZonedPhone], phone_index: int, settings: CallSettings) -> tuple[str, ...]:
    """Zones of the phone a job dials next (the same choice as the dial itself makes)."""
    index = next_usable_phone(phones, phone_index - 1)
    if index is None:
        return (settings.timezone,)
    return phone_zones(phones[index], settings.timezone)


def attempt_zones(attempt: AttemptView, settings: CallSettings) -> tuple[str, ...]:
    """Zones an attempt is checked in: those recorded on it, else its number's (an older attempt)."""
    return tuple(attempt.local_zones) or window_zones(settings.timezone, zones_of_number(attempt.phone))


def next_open_in(settings: CallSettings, at: datetime, zones: Sequence[str]) -> datetime | None:
    """``next_dialable_in``, or None when the window never holds in all the zones at once (e.g. a one-hour
    window and zones hours apart)."""
    try:
        return next_dialable_in(settings, at, zones)
    except ValueError:
        return None


def push_into_zones(settings: CallSettings, at: datetime, phones: Sequence[ZonedPhone], phone_index: int,
                    reason: str) -> tuple[datetime, str]:
    """A next try planned in the batch's zone, moved (if needed) to when the window holds in every zone of
    the phone dialed next; the reason says so when it moved."""
    zones = dial_zones(phones, phone_index, settings)
    pushed = next_open_in(settings, at, zones)
    if pushed is None or pushed == at:  # None: the dial-time check refuses it, naming why
        return at, reason
    return pushed, f"{reason}; in the debtor's time ({', '.join(zones)}) at {pushed.isoformat()}"


def zone_mix(zone_sets: Iterable[Sequence[str]], fallback: str) -> str | None:
    """Load warning when people are placed in more than one zone set, largest first; None otherwise.

    Numbers whose location is unknown (no zone, or a Chilean mobile) place no one: they are checked in
    every zone they may be in, and would otherwise flag every Chilean batch with landlines."""
    unplaced = {(), tuple(sorted(CHILE_MOBILE_ZONES))}
    counts = Counter(" + ".join(zs) for zs in map(tuple, zone_sets) if zs not in unplaced)
    counts.update({fallback: 0})  # the batch's zone is always among the zones in play
    if len(counts) <= 1:
        return None
    parts = [f"{label} {n} {'person' if n == 1 else 'people'}"
             for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n]
    return f"batch mixes time zones: {', '.join(parts)} (batch timezone {fallback})"


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())
