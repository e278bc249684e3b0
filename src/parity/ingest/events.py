"""What a valid stream event is: parsing a message (JSON bytes or text, or Python objects from
``project.push``) and checking each event against its source's schema, with the reason in words
when it is not — the one owner of these rules for every transport.

Per column, one converter is compiled when the ingestor starts, so the common case costs a class
check and an append (about 1 µs for a four-field event, JSON parsing by orjson included); only a
value that fails the fast check takes the slow path, which names what was wrong.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from parity.define.dtypes import DType
from parity.define.sources import StreamSource
from parity.semantics.time import to_micros

_FIRST_US = to_micros(dt.datetime(1, 1, 2, tzinfo=dt.UTC))
_LAST_US = to_micros(dt.datetime(9999, 12, 31, tzinfo=dt.UTC))
_EPOCH_DAY = dt.date(1970, 1, 1)
_INT64 = (-(2**63), 2**63)

Converter = Callable[[object], object]


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

    def __init__(self, source: StreamSource, zone: Any) -> None:
        self.columns = list(source.schema)
        self._fields: list[tuple[str, Converter, str | None]] = []
        for column, dtype in source.schema.items():
            required = None
            if column == source.event_id:
                required = f"field {column!r} (the event id) is missing"
            elif column == source.event_time:
                required = f"field {column!r} (the event time) is missing: an event without a time is never visible"
            self._fields.append((column, _converter(dtype, zone), required))
        self._dtypes = dict(source.schema)

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
        return row


def _converter(dtype: DType, zone: Any) -> Converter:
    name = dtype.name
    if name == "Int64":
        return _int64
    if name == "Float64":
        return _float64
    if name == "String":
        return _string
    if name == "Bool":
        return _bool
    if name == "Timestamp":
        return lambda value: _timestamp(value, zone)
    if name == "Date":
        return _date
    raise BadEvent(f"unsupported dtype {dtype!r}")


def _int64(value: object) -> object:
    if value.__class__ is int and _INT64[0] <= value < _INT64[1]:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent(f"{value!r} is not an integer")
    if not _INT64[0] <= value < _INT64[1]:
        raise BadEvent(f"{value} is outside the Int64 range")
    return int(value)


def _float64(value: object) -> object:
    if value.__class__ is float:
        return value  # NaN and ±inf included: they can come from project.push, never from JSON
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadEvent(f"{value!r} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise BadEvent(f"{value} is outside the Float64 range") from None


def _string(value: object) -> object:
    if value.__class__ is not str and not isinstance(value, str):
        raise BadEvent(f"{value!r} is not a string")
    assert isinstance(value, str)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadEvent(f"{value!r} is not valid UTF-8 text (it holds a lone surrogate)") from None
    return str(value)


def _bool(value: object) -> object:
    if value.__class__ is not bool:
        raise BadEvent(f"{value!r} is not true or false")
    return value


def _timestamp(value: object, zone: Any) -> int:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise BadEvent(f"{value!r} is not ISO-8601 text") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            if zone is None:
                raise BadEvent(f"{value.isoformat()} has no time zone; add one (e.g. 'Z') or declare the source's "
                               f"timezone")
            value = value.replace(tzinfo=zone)
        micros = to_micros(value)
        if not _FIRST_US <= micros <= _LAST_US:
            raise BadEvent(f"{value.isoformat()} is outside the years 1 to 9999 (UTC)")
        return micros
    raise BadEvent(f"{value!r} ({type(value).__name__}) is not a timestamp; give ISO-8601 text with a zone")


def _date(value: object) -> int:
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise BadEvent(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return (value - _EPOCH_DAY).days
    raise BadEvent(f"{value!r} is not a date")
