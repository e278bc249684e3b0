"""Feature values as JSON, the one mapping the CLI, the HTTP API and ``parity.Client`` share.

JSON has no NaN or infinities and no times, so: a non-finite double is the string "NaN",
"Infinity" or "-Infinity" (Protocol Buffers' JSON mapping), a timestamp is ISO-8601 text in UTC,
a date is ``YYYY-MM-DD``. ``to_json`` writes a value; ``from_json`` reads it back by its dtype
(named as ``repr(dtype)`` on the wire: ``Float64``, ``List(Timestamp)``), so a value crosses the
wire and comes back with the same bits — NaN included.
"""

from __future__ import annotations

import datetime as dt
import math

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_json(value: object) -> object:
    if value.__class__ is float and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo is not None else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def from_json(value: object, dtype: str) -> object:
    """A wire value of a feature of dtype ``dtype`` (its repr) as the Python value
    ``Project.query`` gives."""
    if value is None:
        return None
    if dtype.startswith("List("):
        inner = dtype[5:-1]
        return [from_json(v, inner) for v in value] if isinstance(value, list) else value
    if dtype == "Float64":
        if isinstance(value, str):
            return _NON_FINITE.get(value, value)
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if dtype == "Timestamp" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if dtype == "Date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value
