"""Time: every timestamp inside parity is timezone-aware UTC, carried as integer microseconds.

Naive input is rejected with a clear error unless the caller declares its zone.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from parity.errors import NaiveTimestampError

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = dt.timedelta(microseconds=1)


def ensure_utc(value: dt.datetime, *, what: str, zone: str | None = None) -> dt.datetime:
    """``value`` as an aware UTC datetime; naive values need ``zone``."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        if zone is None:
            raise NaiveTimestampError(
                f"{what}: timestamp {value.isoformat()} has no time zone; pass an aware datetime "
                f"(e.g. datetime(..., tzinfo=timezone.utc)) or declare the zone"
            )
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(UTC)


def to_micros(value: dt.datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, no float rounding)."""
    return (value - _EPOCH) // _ONE_US


def from_micros(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def now_micros() -> int:
    return to_micros(dt.datetime.now(UTC))


def timedelta_micros(delta: dt.timedelta) -> int:
    return delta // _ONE_US
