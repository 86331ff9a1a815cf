"""Calendar math in the batch's timezone. Inputs and outputs are aware datetimes (outputs in UTC).

An instant is *dialable* when its local wall time, read in the batch's timezone, falls on an allowed
ISO weekday that is not a public holiday (nor a closed date) and inside one of the ``[start, end)``
ranges. That definition is exact across DST: a wall time skipped by a spring-forward gap never
happens, so a range starting inside the gap opens at the first valid instant after it; a wall time
repeated by a fall-back happens twice and is dialable both times.

Dialability can only switch at a *boundary*: an instant whose wall time is a range start, a range end
or a local midnight, or a UTC-offset transition. ``next_dialable`` and ``window_end`` scan those
boundaries in order, so their answers are exact to the microsecond and need no stepping.

``is_dialable_in`` and ``next_dialable_in`` read the same settings in several zones at once (the
debtor's possible zones, ``domain/zones.py``): dialable only when dialable in each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import holidays

from speechai.domain.settings import CallSettings

SCAN_DAYS = 400  # a year and a bit: enough for any real calendar; settings allowing nothing raise
_MIDNIGHT = time(0)


def local_date(settings: CallSettings, at: datetime) -> date:
    return _aware(at).astimezone(settings.tz).date()


def is_dialable(settings: CallSettings, at: datetime) -> bool:
    """Allowed weekday, not a holiday or closed date, local wall time inside an allowed range."""
    return _dialable(settings.effective(), _aware(at))


def next_dialable(settings: CallSettings, at: datetime, *, use_waves: bool = True) -> datetime:
    """Earliest dialable instant >= ``at``.

    With ``waves`` set (and ``use_waves``), the earliest *wave start* >= ``at`` that is dialable: a first
    dial or a retry waits for the next wave even inside an open range. Pass ``use_waves=False`` for
    "when is dialing next allowed at all" (e.g. to wake up for a job already due).
    Raises ValueError if nothing is dialable within ``SCAN_DAYS``.
    """
    s = settings.effective()
    at = _aware(at).astimezone(UTC)
    waves = use_waves and bool(s.waves)
    if not waves and _dialable(s, at):
        return at
    tz = s.tz
    first = local_date(s, at) - timedelta(days=1)
    best: datetime | None = None
    stop_after: date | None = None
    for i in range(SCAN_DAYS + 2):
        d = first + timedelta(days=i)
        if stop_after is not None and d > stop_after:
            break
        if not _date_ok(s, d):
            continue
        cands = _wave_instants(tz, d, s) if waves else _boundaries(tz, d, s)
        for c in cands:
            if c >= at and (best is None or c < best) and _dialable(s, c):
                best = c
        if best is not None and stop_after is None:
            # Fall-back can put a later date's boundary before an earlier date's: look a day further.
            stop_after = d + timedelta(days=1)
    if best is None:
        raise ValueError(f"settings allow no dialable instant within {SCAN_DAYS} days after {at.isoformat()} "
                         f"(days_of_week={s.days_of_week}, allowed_hours={_fmt_hours(s)}, waves={s.waves})")
    return best


def window_end(settings: CallSettings, at: datetime) -> datetime | None:
    """The instant dialing must stop: end of the open range containing ``at`` (adjacent ranges merge).

    None when ``at`` is not dialable.
    """
    s = settings.effective()
    at = _aware(at).astimezone(UTC)
    if not _dialable(s, at):
        return None
    tz = s.tz
    first = local_date(s, at) - timedelta(days=1)
    for i in range(SCAN_DAYS + 2):
        d = first + timedelta(days=i)
        # the whole day is scanned together: its boundaries are not globally ordered across dates
        cands = sorted(c for dd in (d, d + timedelta(days=1)) for c in _boundaries(tz, dd, s) if c > at)
        for c in cands:
            if not _dialable(s, c):
                return c
    raise ValueError(f"settings never stop being dialable within {SCAN_DAYS} days")  # pragma: no cover


def first_instant_at(tz: ZoneInfo, d: date, t: time) -> datetime:
    """First UTC instant whose local wall time is ``d t``; inside a DST gap, the gap's end."""
    instants = _instants_at(tz, datetime.combine(d, t))
    return instants[0]


def next_local_midnight(tz: ZoneInfo, at: datetime) -> datetime:
    """Start of the next local date after ``at`` (DST-exact), in UTC."""
    return first_instant_at(tz, _aware(at).astimezone(tz).date() + timedelta(days=1), _MIDNIGHT)


def fmt_local(settings: CallSettings, at: datetime) -> str:
    """Operator-readable local time, e.g. ``2026-09-07 08:00 -03``."""
    local = _aware(at).astimezone(settings.tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


# --- internals -------------------------------------------------------------------------------------


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()} given where an aware UTC instant is required")
    return at


def _dialable(s: CallSettings, at: datetime) -> bool:
    local = at.astimezone(s.tz)
    if not _date_ok(s, local.date()):
        return False
    t = local.time()
    return any(r.contains(t) for r in s.allowed_hours)


def _date_ok(s: CallSettings, d: date) -> bool:
    if d.isoweekday() not in s.days_of_week or d in s.closed_dates:
        return False
    return not any(d in _holiday_calendar(c, d.year) for c in s.holiday_countries)


@lru_cache(maxsize=256)
def _holiday_calendar(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=year).keys())


def _boundaries(tz: ZoneInfo, d: date, s: CallSettings) -> list[datetime]:
    walls = {_MIDNIGHT, *(r.start for r in s.allowed_hours), *(r.end for r in s.allowed_hours)}
    out = [u for t in walls for u in _instants_at(tz, datetime.combine(d, t))]
    out.extend(_transitions(tz, d))
    return out


def _wave_instants(tz: ZoneInfo, d: date, s: CallSettings) -> list[datetime]:
    return [u for w in s.waves for u in _instants_at(tz, datetime.combine(d, w))]


@lru_cache(maxsize=8192)
def _instants_at(tz: ZoneInfo, wall: datetime) -> tuple[datetime, ...]:
    """Every UTC instant whose local wall time is ``wall`` (two in a fall-back repeat), in order;
    for a wall time skipped by a gap, the single instant the gap ends."""
    found = []
    for fold in (0, 1):
        u = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if u.astimezone(tz).replace(tzinfo=None) == wall:
            found.append(u)
    if found:
        return tuple(sorted(set(found)))
    # Nonexistent: PEP 495 maps it with the offsets on either side; the transition lies between.
    a = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(a, b), max(a, b)
    return (_search(lo, hi, lambda u: u.astimezone(tz).replace(tzinfo=None) >= wall),)


@lru_cache(maxsize=4096)
def _transitions(tz: ZoneInfo, d: date) -> tuple[datetime, ...]:
    """UTC-offset changes during the hours that can belong to local date ``d`` (any offset ±14 h)."""
    start = datetime.combine(d, _MIDNIGHT, tzinfo=UTC) - timedelta(hours=15)
    points = [start + timedelta(hours=6 * k) for k in range(10)]  # 54 h, sampled every 6 h
    out = []
    for lo, hi in pairwise(points):
        off_lo = lo.astimezone(tz).utcoffset()
        if hi.astimezone(tz).utcoffset() != off_lo:
            out.append(_search(lo, hi, lambda u, o=off_lo: u.astimezone(tz).utcoffset() != o))
    return tuple(out)


def _search(lo: datetime, hi: datetime, pred: Callable[[datetime], bool]) -> datetime:
    """Smallest whole second in (lo, hi] where monotone ``pred`` holds (pred(hi) must be true)."""
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    if hi.timestamp() != hi_s:
        hi_s += 1
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if pred(datetime.fromtimestamp(mid, UTC)):
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def _fmt_hours(s: CallSettings) -> str:
    return ", ".join(f"{r.start:%H:%M}-{r.end:%H:%M}" for r in s.allowed_hours)


# --- the debtor's local time ------------------------------------------------------------------------


def is_dialable_in(settings: CallSettings, at: datetime, zones: Sequence[str]) -> bool:
    """Dialable in every one of ``zones`` (the batch's days, hours and holidays, read in each zone).

    ``zones`` empty means the batch's own timezone."""
    return all(_dialable(s, _aware(at)) for s in _zoned(settings.effective(), tuple(zones)))


def next_dialable_in(settings: CallSettings, at: datetime, zones: Sequence[str]) -> datetime:
    """Earliest instant >= ``at`` dialable in every one of ``zones`` (waves are not applied: they are the
    batch's pacing, read in the batch's zone). Raises ValueError if none within ``SCAN_DAYS``.

    Each round moves to the latest of the zones' own next openings: never past the answer (it is
    dialable in each zone, so no zone's next opening lies beyond it) and strictly forward while the
    zones disagree, over finitely many boundaries, so it ends exactly on the answer."""
    per_zone = _zoned(settings.effective(), tuple(zones))
    at = _aware(at).astimezone(UTC)
    limit = at + timedelta(days=SCAN_DAYS)
    t = at
    while t <= limit:
        opens = [next_dialable(s, t, use_waves=False) for s in per_zone]
        latest = max(opens)
        if latest == t:
            return t
        t = latest
    raise ValueError(f"settings allow no instant dialable in all of {', '.join(zones)} within {SCAN_DAYS} days "
                     f"after {at.isoformat()} (allowed_hours={_fmt_hours(settings.effective())})")


def _zoned(s: CallSettings, zones: tuple[str, ...]) -> list[CallSettings]:
    """One copy of the (effective) settings per zone, the rest unchanged."""
    if not zones:
        return [s]
    return [s if z == s.timezone else s.model_copy(update={"timezone": z}) for z in dict.fromkeys(zones)]
