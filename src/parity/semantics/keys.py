"""Entity keys: which values are keys of which dtype, and their one canonical form.

The same acceptance rule for a spine column and for a request value — a wrong type is an error on
both paths, never a cast (a float 1.5, a bool or the string "1" is not an Int64 key):

========== ===============================================================================
Int64      integers (of any width, within the Int64 range); not bools, floats or strings
Float64    floats or integers
String     strings only; compared by exact code points (bytes) on every path and every source
Bool       bools only
Timestamp  timezone-aware datetimes
Date       dates (not datetimes)
========== ===============================================================================

Canonical form: keys are compared in their storage form (``semantics.values``); Float64 keys compare
as IEEE numbers do, so -0.0 and 0.0 are one key and every NaN is one key. ``canonical_expr`` and
``canonical_value`` put keys in that form, and ``encode`` gives the bytes every online store keys
by — the offline join and the stores therefore agree on what "the same key" is.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import msgpack
import polars as pl

from parity.define.dtypes import DType
from parity.errors import DataError, EntityKeyError
from parity.semantics import values

_packb = msgpack.Packer(use_bin_type=True).pack
_INT64_MAX = 2**63 - 1


def canonical_value(dtype: DType, stored: object) -> object:
    """A key value in storage form, canonical (Float64: -0.0 → 0.0, any NaN → the one NaN)."""
    if dtype.name == "Float64" and isinstance(stored, float):
        if math.isnan(stored):
            return math.nan
        if stored == 0.0:
            return 0.0
    return stored


def canonical_expr(dtype: DType, expr: pl.Expr) -> pl.Expr:
    """``canonical_value`` over a column of storage-form (or Polars-typed) key values."""
    if dtype.name != "Float64":
        return expr
    return pl.when(expr.is_nan()).then(float("nan")).when(expr == 0.0).then(0.0).otherwise(expr)


def encode(key: Sequence[object]) -> bytes:
    """The bytes an online store keys a (canonical, storage-form) key tuple by."""
    return _packb(list(key))


def _accepts(dtype: DType, value: object) -> bool:
    name = dtype.name
    if isinstance(value, bool):
        return name == "Bool"
    if name == "Int64":
        return isinstance(value, int)
    if name == "Float64":
        return isinstance(value, int | float)
    if name == "String":
        return isinstance(value, str)
    if name == "Timestamp":
        return isinstance(value, dt.datetime) and value.tzinfo is not None
    if name == "Date":
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    return False


def request_key(dtype: DType, value: object, where: str) -> object:
    """A key value given in a request, checked (table above) and in canonical storage form."""
    kind = type(value)  # the common cases first: this runs for every key of every request
    if (kind is int and dtype.name == "Int64" and -(2**63) <= value <= _INT64_MAX) or (  # type: ignore[operator]
            kind is str and dtype.name == "String" and value.isascii()):  # type: ignore[attr-defined]
        return value
    if value is None:
        raise EntityKeyError(f"{where} is null; give a value for every entity")
    if not _accepts(dtype, value):
        raise EntityKeyError(f"{where} is {value!r} ({type(value).__name__}); a {dtype!r} key takes "
                             f"{_describe(dtype, python=True)} (nothing is cast: a wrong type would match other keys)")
    try:
        return canonical_value(dtype, values.to_storage(dtype, value, where=where))
    except DataError:  # an int outside the Int64 (or Float64) range, a string that is not UTF-8
        raise EntityKeyError(f"{where} is {value!r}, which a {dtype!r} key cannot hold") from None


_SPINE_TYPES: dict[str, tuple[type[pl.DataType], ...]] = {
    "Int64": (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64),
    "Float64": (pl.Float32, pl.Float64, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32,
                pl.UInt64),
    "String": (pl.String, pl.Categorical, pl.Enum),
    "Bool": (pl.Boolean,),
    "Timestamp": (pl.Datetime,),
    "Date": (pl.Date,),
}


def spine_key(dtype: DType, series: pl.Series, *, column: str, key: str) -> pl.Series:
    """A spine column as key ``key`` of ``dtype``: checked (table above), cast, canonical."""
    raw = series.dtype
    accepted = _SPINE_TYPES[dtype.name]
    if raw != pl.Null and not isinstance(raw, accepted):
        raise EntityKeyError(
            f"spine column {column!r} has type {raw}, which is not a {dtype!r} key {key!r}; "
            f"a {dtype!r} key takes {_describe(dtype)} (nothing is cast: a wrong type would match other keys)"
        )
    if isinstance(raw, pl.Datetime) and raw.time_zone is None and series.null_count() < len(series):
        raise EntityKeyError(f"spine column {column!r} holds timestamps without a time zone for key {key!r}; "
                             f"make them timezone-aware")
    if raw == pl.UInt64 and dtype.name == "Int64":
        too_big = series > _INT64_MAX
        if too_big.any():
            row = int(too_big.arg_true()[0])
            raise EntityKeyError(f"spine column {column!r}, row {row}: {series[row]} is outside the Int64 range of "
                                 f"key {key!r}")
    cast = series.cast(values.polars_type(dtype))
    return cast.to_frame().select(canonical_expr(dtype, pl.col(cast.name))).to_series()


def _describe(dtype: DType, *, python: bool = False) -> str:
    kinds = {
        "Int64": "integer",
        "Float64": "float or integer",
        "String": "string",
        "Bool": "boolean",
        "Timestamp": "timezone-aware timestamp",
        "Date": "date",
    }[dtype.name]
    return f"{kinds} values" if python else f"{kinds} columns"
