"""Values: the one mapping between feature dtypes, Arrow/Polars columns and Python values.

Offline and online both turn stored values into Python values here, so a resolver sees the same
objects in both paths (timestamps as aware UTC datetimes, dates as ``date``), and both check a
resolver's outputs here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import polars as pl
import pyarrow as pa

from parity.define.dtypes import DType
from parity.errors import DataError
from parity.semantics.time import UTC, from_micros, to_micros

_EPOCH_DATE = dt.date(1970, 1, 1)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_ARROW: dict[str, pa.DataType] = {
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
    "String": pa.string(),
    "Timestamp": pa.timestamp("us", tz="UTC"),
    "Date": pa.date32(),
}
_POLARS: dict[str, pl.DataType] = {
    "Int64": pl.Int64(),
    "Float64": pl.Float64(),
    "Bool": pl.Boolean(),
    "String": pl.String(),
    "Timestamp": pl.Datetime("us", "UTC"),
    "Date": pl.Date(),
}
# Storage form: what the online store keeps and what the offline engine hands to resolvers before
# conversion. Timestamps are µs since epoch, dates days since epoch; the rest are plain Python.
_STORAGE_POLARS: dict[str, pl.DataType] = {**_POLARS, "Timestamp": pl.Int64(), "Date": pl.Int32()}


def arrow_type(dtype: DType) -> pa.DataType:
    return pa.list_(arrow_type(dtype.inner)) if dtype.inner is not None else _ARROW[dtype.name]


def polars_type(dtype: DType) -> pl.DataType:
    return pl.List(polars_type(dtype.inner)) if dtype.inner is not None else _POLARS[dtype.name]


def storage_polars_type(dtype: DType) -> pl.DataType:
    return pl.List(storage_polars_type(dtype.inner)) if dtype.inner is not None else _STORAGE_POLARS[dtype.name]


def _scalar_from_storage(name: str) -> Callable[[object], object]:
    if name == "Timestamp":
        return lambda v: None if v is None else from_micros(v)  # type: ignore[arg-type]
    if name == "Date":
        return lambda v: None if v is None else _EPOCH_DATE + dt.timedelta(days=v)  # type: ignore[arg-type]
    return lambda v: v


def from_storage(dtype: DType) -> Callable[[object], object]:
    """A function turning one stored value of ``dtype`` into the Python value resolvers see."""
    if dtype.inner is not None:
        inner = _scalar_from_storage(dtype.inner.name)
        return lambda v: None if v is None else [inner(x) for x in v]  # type: ignore[attr-defined]
    return _scalar_from_storage(dtype.name)


def scalar_to_storage(name: str, value: object) -> object:
    """A scalar in storage form, or TypeError naming what it should have been ("an int")."""
    if value is None:
        return None
    if name == "Timestamp":
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise TypeError("an aware datetime")
        return to_micros(value.astimezone(UTC))
    if name == "Date":
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise TypeError("a date")
        return (value - _EPOCH_DATE).days
    if name == "Float64":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("a float")
        try:
            return float(value)
        except OverflowError:  # an int too large for a float
            raise TypeError("a float within the Float64 range") from None
    if name == "Int64":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("an int")
        if not _INT64_MIN <= value <= _INT64_MAX:  # offline would store null, online the big int
            raise TypeError("an int within the Int64 range")
        return value
    if name == "Bool":
        if not isinstance(value, bool):
            raise TypeError("a bool")
        return value
    if not isinstance(value, str):
        raise TypeError("a str")
    if not value.isascii():
        try:
            value.encode("utf-8")  # lone surrogates: Arrow cannot hold them, so offline could not either
        except UnicodeEncodeError:
            raise TypeError("a str encodable as UTF-8") from None
    return value


def to_storage(dtype: DType, value: object, *, where: str) -> object:
    """Check a resolver output against its dtype and return its storage form.

    Ints are accepted for Float64 (widened); anything else of the wrong type is an error naming
    ``where`` (resolver, feature, row or key).
    """
    try:
        if dtype.inner is not None:
            if value is None:
                return None
            if not isinstance(value, (list, tuple)):
                raise TypeError("a list")
            return [scalar_to_storage(dtype.inner.name, x) for x in value]
        return scalar_to_storage(dtype.name, value)
    except TypeError as exc:
        raise DataError(
            f"{where}: returned {value!r} ({type(value).__name__}) for a {dtype!r} feature; return {exc.args[0]} or None"
        ) from None



def same_value(a: object, b: object) -> bool:
    """Bit-for-bit equality for exact types; NaN equals NaN (the same bits came through)."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)  # -0.0 is not 0.0
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if a is not None and b is not None else a is b
