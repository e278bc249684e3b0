"""Time: every timestamp inside parity is timezone-aware UTC, carried as integer microseconds.

How raw time values become instants — the same on every source and path:

- an aware timestamp is converted to UTC; a zone declared on the source does not apply to it;
- a naive timestamp needs a declared zone (``timezone=`` on the source or the call) and is read as a
  wall-clock time there. At DST changes: a wall time that occurs twice (the hour repeated when clocks
  go back) is read as its **earliest** occurrence; a wall time that does not exist (the hour skipped
  when clocks go forward) is read as the **first instant after the gap** (02:30 on a spring-forward
  night in Europe/Berlin is 03:00 CEST). Both choices keep the reading monotonic: a later wall time
  is never an earlier instant, so comparisons pushed down to a database on wall times stay exact;
- a date is midnight at the start of that day, in the declared zone (UTC when none is declared);
- an integer is Unix seconds; ISO-8601 text is read with ``datetime.fromisoformat`` and then as above.
  Stream events (``ingest.events``) refuse integers: on the wire, seconds and milliseconds cannot
  be told apart.
"""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parity.errors import ConfigError, DataError, NaiveTimestampError

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = dt.timedelta(microseconds=1)
_US_PER_S = 1_000_000
_EPOCH_DATE = dt.date(1970, 1, 1)
# Real zones change their offset by at most a few hours at once; a search window for transitions.
_MAX_SHIFT = dt.timedelta(hours=4)


def zone(name: str, *, what: str) -> ZoneInfo:
    """The IANA zone ``name`` or a one-line error naming ``what`` declared it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"{what}: {name!r} is not a known time zone; use an IANA name such as 'UTC' or "
                          f"'Europe/Berlin'") from None


def ensure_utc(value: dt.datetime, *, what: str, zone_name: str | None = None) -> dt.datetime:
    """``value`` as an aware UTC datetime; naive values need ``zone_name``."""
    if not isinstance(value, dt.datetime):
        raise DataError(f"{what}: expected a timezone-aware datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        if zone_name is None:
            raise NaiveTimestampError(
                f"{what}: timestamp {value.isoformat()} has no time zone; pass an aware datetime "
                f"(e.g. datetime(..., tzinfo=timezone.utc)) or declare the zone"
            )
        return from_micros(local_to_micros(value, zone(zone_name, what=what)))
    return value.astimezone(UTC)


def to_micros(value: dt.datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, no float rounding)."""
    return (value - _EPOCH) // _ONE_US


def from_micros(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def iso_micros(us: int) -> str:
    """An instant as ISO-8601 text in UTC with a ``Z`` (reports, the HTTP API, webhooks)."""
    return from_micros(us).isoformat().replace("+00:00", "Z")


def now_micros() -> int:
    # The same instant as to_micros(datetime.now(UTC)), without building a datetime: consumers
    # stamp every message they receive with it.
    return time.time_ns() // 1000


def timedelta_micros(delta: dt.timedelta) -> int:
    return delta // _ONE_US


# --- naive wall-clock times in a zone ---------------------------------------------------------


def _naive_micros(wall: dt.datetime) -> int:
    return to_micros(wall.replace(tzinfo=UTC))


def _exists(wall: dt.datetime, tz: ZoneInfo) -> bool:
    back = wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    return back == wall


def _transition_in(lo: dt.datetime, hi: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """The first UTC instant in (lo, hi] whose offset differs from lo's (bisection to the µs)."""
    offset = lo.astimezone(tz).utcoffset()
    while hi - lo > _ONE_US:
        mid = lo + (hi - lo) // 2
        if mid.astimezone(tz).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return hi


def local_to_micros(wall: dt.datetime, tz: ZoneInfo) -> int:
    """UTC µs of a naive wall-clock time in ``tz`` (earliest when repeated, gap end when skipped)."""
    wall = wall.replace(tzinfo=None)
    if _exists(wall, tz):
        return to_micros(wall.replace(tzinfo=tz, fold=0).astimezone(UTC))
    # In a gap: fold=1 reads it with the offset after the change, fold=0 with the one before; the
    # change itself lies between the two readings.
    after = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    before = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    lo, hi = min(after, before), max(after, before)
    return to_micros(_transition_in(lo - _ONE_US, hi, tz))


def latest_wall_at_or_before(t_us: int, tz: ZoneInfo) -> dt.datetime:
    """The greatest naive wall time w with ``local_to_micros(w) <= t_us``.

    Because the reading is monotonic, ``instant(column) <= t`` is exactly ``column <= this`` on a
    naive column — which is what a database can compare (and index).
    """
    t = from_micros(t_us)
    local = t.astimezone(tz)
    wall = local.replace(tzinfo=None)
    if local.fold == 0 or local_to_micros(wall, tz) == t_us:
        return wall
    # t is in the second run of a repeated hour: every wall time of that hour reads as its first
    # run, which is before t; the answer is the last wall time of the repeated hour. The clocks
    # went back by (earlier offset - later offset), so the change lies within that much before t.
    earlier = wall.replace(tzinfo=tz, fold=0).utcoffset()
    later = local.utcoffset()
    shift = (earlier - later) if earlier is not None and later is not None else _MAX_SHIFT
    change = _transition_in(t - shift - _ONE_US, t, tz)
    end_of_repeat = (change - _ONE_US).astimezone(tz).replace(tzinfo=None)
    return end_of_repeat


# --- dates and Unix seconds -------------------------------------------------------------------


def date_to_micros(day: dt.date, tz: ZoneInfo | None) -> int:
    """Midnight at the start of ``day`` in ``tz`` (UTC when None)."""
    midnight = dt.datetime(day.year, day.month, day.day)
    return _naive_micros(midnight) if tz is None else local_to_micros(midnight, tz)


def latest_date_at_or_before(t_us: int, tz: ZoneInfo | None) -> dt.date:
    """The greatest date d with ``date_to_micros(d) <= t_us``."""
    day = from_micros(t_us).astimezone(tz or UTC).date()
    if date_to_micros(day, tz) > t_us:  # midnight skipped by a DST change and read as a later instant
        day -= dt.timedelta(days=1)
    return day


def seconds_to_micros(seconds: int) -> int:
    return seconds * _US_PER_S


def latest_second_at_or_before(t_us: int) -> int:
    return t_us // _US_PER_S


def days_since_epoch(day: dt.date) -> int:
    return (day - _EPOCH_DATE).days


def date_from_days(days: int) -> dt.date:
    return _EPOCH_DATE + dt.timedelta(days=days)


def parse_iso(text: str) -> dt.datetime | dt.date:
    """ISO-8601 text as a datetime (aware or naive) or, for a date alone (any ISO form: 2024-01-31,
    20240131, 2024-W05-3), a date. ValueError if not ISO."""
    text = text.strip()
    if "\x00" in text:  # Python's parser reads up to a NUL and ignores the rest
        raise ValueError(f"{text!r} holds a NUL character")
    if "T" not in text and ":" not in text and " " not in text:
        return dt.date.fromisoformat(text)
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
