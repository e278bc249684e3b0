"""What a valid stream event is: parsing a message (JSON bytes or text, or Python objects from
``project.push``) and checking each event against its source's schema, with the reason in words
when it is not — the one owner of these rules for every transport.

Per column, one converter is compiled when the ingestor starts, so the common case costs a class
check and an append (about 1 µs for a four-field event, JSON parsing by orjson included); any
other value is checked by the owners of the rules — ``semantics.values`` (storage forms: Int64
range, Float64 overflow, UTF-8 text) and ``semantics.time`` (zones, DST, dates) — and a failure
names what was wrong.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from parity.define.dtypes import DType
from parity.define.sources import StreamSource
from parity.errors import ConfigError
from parity.semantics import expectations, time, values

_FIRST_US = time.to_micros(dt.datetime(1, 1, 2, tzinfo=dt.UTC))
_LAST_US = time.to_micros(dt.datetime(9999, 12, 31, tzinfo=dt.UTC))
_INT64 = (-(2**63), 2**63)

Converter = Callable[[object], object]
TimeRange = tuple[int, int, str]  # lowest and highest µs, and what holds them (for the reason)


class BadEvent(ValueError):
    """An event that cannot be accepted; the message says what was wrong and where."""


def parse(payload: object) -> list[tuple[object, str | None]]:
    """A message's events, each with None or the reason it is not an event."""
    if isinstance(payload, bytes | bytearray | memoryview | str):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return [(payload, f"not JSON: {_json_reason(str(exc))}")]
    if isinstance(payload, Mapping):
        return [(payload, None)]
    if isinstance(payload, list | tuple):
        return [(e, None if isinstance(e, Mapping) else "an event must be a JSON object") for e in payload]
    return [(payload, f"an event must be a JSON object, not {type(payload).__name__}")]


def _json_reason(message: str) -> str:
    # orjson's words, with the two causes a producer most needs spelled out.
    if "depth limit exceeded" in message:
        return f"nested too deeply (more than 1,024 levels): {message}"
    if "surrogate" in message:
        return f"text holds a lone surrogate, which is not valid UTF-8: {message}"
    return message


def text(event: object) -> str:
    """An event as text for the dead-letter store."""
    if isinstance(event, bytes | bytearray | memoryview):
        return bytes(event).decode("utf-8", "replace")
    if isinstance(event, str):
        return event
    try:
        return json.dumps(event, default=str)
    except (TypeError, ValueError):
        return repr(event)


class EventSchema:
    """A source's schema, compiled: ``row(event)`` gives the event's fields in storage form
    (Int64, Float64, String, Bool as themselves; Timestamp as UTC µs; Date as days since the epoch),
    in schema order, or raises ``BadEvent``."""

    def __init__(self, source: StreamSource, zone: Any, time_range: TimeRange | None = None) -> None:
        """``time_range``: the instants the online store can index (its ``time_range_us``), which
        the event and created times must fall in — or the event could be logged and never applied."""
        self._fields: list[tuple[str, Converter, str | None]] = []
        for column, dtype in source.schema.items():
            required = None
            if column == source.event_id:
                required = f"field {column!r} (the event id) is missing"
            elif column == source.event_time:
                required = f"field {column!r} (the event time) is missing: an event without a time is never visible"
            indexed = column in (source.event_time, source.created_time)
            self._fields.append((column, _converter(dtype, zone, time_range if indexed else None), required))
        self._dtypes = dict(source.schema)
        position = {column: i for i, column in enumerate(source.schema)}
        expected = [(position[column], column, e) for column, found in source.expect.items() for e in found]
        # quarantine: ``row`` refuses an event that breaks one; warn: ``broken`` names them, after
        # the ingestor accepted the event (a duplicate or too-late one is not counted)
        self.warned = expected if source.on_violation == "warn" else []
        self._expected = [] if self.warned else expected

    def row(self, event: Mapping[str, object]) -> list[object]:
        row: list[object] = []
        append = row.append
        get = event.get
        for column, convert, required in self._fields:
            value = get(column)
            if value is None:
                if required is not None:
                    raise BadEvent(required)
                append(None)
                continue
            try:
                append(convert(value))
            except BadEvent as exc:
                raise BadEvent(f"field {column!r}: {exc} (a {self._dtypes[column]!r} column)") from None
        for i, column, e in self._expected:  # the declared expectations: none, for most sources
            if expectations.breaks(e, row[i]):
                raise BadEvent(f"field {column!r}: {event.get(column)!r} breaks the expectation {e.describe()}")
        return row

    def broken(self, row: Sequence[object]) -> list[str]:
        """The warn-mode expectations an accepted event's ``row`` breaks, as 'column: expectation'."""
        return [f"{column}: {e.describe()}" for i, column, e in self.warned if expectations.breaks(e, row[i])]


def _converter(dtype: DType, zone: Any, time_range: TimeRange | None = None) -> Converter:
    name = dtype.name
    if name == "Timestamp":
        return _time_converter(zone, time_range)
    if name == "Date":
        return _date
    # The common case is one class check; anything else is checked by the owner of storage forms.
    fast = {"Int64": int, "Float64": float, "String": str, "Bool": bool}.get(name)
    if fast is None:
        raise ConfigError(f"a stream event cannot hold a {dtype!r} field; declare a scalar dtype")
    in_range = _INT64 if name == "Int64" else None

    def convert(value: object) -> object:
        if value.__class__ is fast and (in_range is None or in_range[0] <= value < in_range[1]):  # type: ignore[operator]
            return value if name != "String" or value.isascii() else _storage(name, value)  # type: ignore[attr-defined]
        return _storage(name, value)

    return convert


def _time_converter(zone: Any, time_range: TimeRange | None) -> Converter:
    """Timestamps by ``_timestamp``'s rules, the common case first: ISO text with a time and a zone
    (``…Z``, ``…+02:00``) that falls in range is read by ``fromisoformat`` alone — what
    ``semantics.time.parse_iso`` gives for such text (Python 3.11 reads the ``Z`` itself) — and
    anything else, or anything out of range, goes the whole way, which says what was wrong."""
    low, high = _FIRST_US, _LAST_US
    if time_range is not None:
        low, high = max(low, time_range[0]), min(high, time_range[1])
    from_iso, to_micros = dt.datetime.fromisoformat, time.to_micros

    def whole(value: object) -> int:
        micros = _timestamp(value, zone)
        return micros if time_range is None else _within(micros, value, time_range)

    def convert(value: object) -> object:
        if value.__class__ is str and "T" in value and "\x00" not in value:  # fromisoformat stops at a NUL
            try:
                parsed = from_iso(value)
            except ValueError:
                return whole(value)
            if parsed.tzinfo is not None:
                micros = to_micros(parsed)
                if low <= micros <= high:
                    return micros
        return whole(value)

    return convert


def _storage(name: str, value: object) -> object:
    try:
        return values.scalar_to_storage(name, value)
    except TypeError as exc:
        raise BadEvent(f"{value!r} is not {exc.args[0]}") from None


def _timestamp(value: object, zone: Any) -> int:
    """``semantics.time``'s rules: aware times as they are, naive ones in the source's declared
    zone (earliest when repeated, the gap's end when skipped), a date at its midnight."""
    if isinstance(value, str):
        try:
            value = time.parse_iso(value)
        except ValueError:
            raise BadEvent(f"{value!r} is not ISO-8601 text") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            micros = time.to_micros(value)
        elif zone is None:
            raise BadEvent(f"{value.isoformat()} has no time zone; add one (e.g. 'Z') or declare the source's timezone")
        else:
            micros = time.local_to_micros(value, zone)
    elif isinstance(value, dt.date):
        micros = time.date_to_micros(value, zone)
    else:
        raise BadEvent(f"{value!r} ({type(value).__name__}) is not a timestamp; give ISO-8601 text with a zone "
                       f"(an integer is refused: seconds and milliseconds cannot be told apart)")
    if not _FIRST_US <= micros <= _LAST_US:
        raise BadEvent(f"{value.isoformat()} is outside the instants parity stores "
                       f"(0001-01-02 to 9999-12-31T00:00Z)")
    return micros


def _within(micros: int, value: object, time_range: TimeRange) -> int:
    low, high, what = time_range
    if not low <= micros <= high:
        raise BadEvent(f"{value!r} is outside what {what}")
    return micros


def _date(value: object) -> int:
    if isinstance(value, str):
        try:
            value = time.parse_iso(value)
        except ValueError:
            raise BadEvent(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return time.days_since_epoch(value)
    raise BadEvent(f"{value!r} is not a date")
