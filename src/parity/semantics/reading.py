"""Reading: how a raw source value becomes a feature value — one table, for scans and lookups alike.

Every connector reduces its system's column types to a *wire* type (what its driver hands over,
after the SELECT expression the system's own type table chose), and this module converts wire
values to a feature dtype. Each entry has a vectorized form (Polars, for scans) and a scalar form
(Python values, for request-time lookups); the property tests hold the two to the same answers.

A value that does not fit its dtype is an error naming the source, column and row — never a silent
cast: 1.5 into Int64, 2 into Bool, 2^64 into Int64, "abc" into Timestamp all fail.

======== ======================================================================================
wire     feature dtypes it can be read as
======== ======================================================================================
int      Int64 (in range) · Float64 (nearest double) · Bool (0 or 1 only) · Timestamp (Unix seconds)
float    Float64 (exactly; a 32-bit float widens exactly) · Int64 (integral values in range only)
decimal  Float64 (nearest double) · Int64 (integral values in range only) · String (its digits)
bool     Bool
text     String · Timestamp and Date (ISO-8601 text)
aware    Timestamp (converted to UTC; a declared zone does not apply)
utc      Timestamp (naive values a driver is known to give in UTC, e.g. MySQL TIMESTAMP)
naive    Timestamp (read in the declared zone, ``semantics.time``; no zone declared is an error)
date     Date · Timestamp (midnight in the declared zone, UTC when none)
list     List of a dtype its elements can be read as
null     anything (a column with no values)
======== ======================================================================================
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import polars as pl

from parity.define.dtypes import DType
from parity.errors import DataError, NaiveTimestampError
from parity.semantics import time as ptime
from parity.semantics.values import polars_type, storage_polars_type

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_SECONDS = _INT64_MAX // 1_000_000


@dataclass(frozen=True)
class Wire:
    kind: str  # int, float, decimal, bool, text, aware, utc, naive, date, list, null
    inner: Wire | None = None

    def __repr__(self) -> str:
        return f"list<{self.inner!r}>" if self.inner is not None else self.kind


INT, FLOAT, DECIMAL, BOOL, TEXT = Wire("int"), Wire("float"), Wire("decimal"), Wire("bool"), Wire("text")
AWARE, UTC_NAIVE, NAIVE, DATE, NULL = Wire("aware"), Wire("utc"), Wire("naive"), Wire("date"), Wire("null")

_ALLOWED: dict[str, tuple[str, ...]] = {
    "int": ("Int64", "Float64", "Bool", "Timestamp"),
    "float": ("Float64", "Int64"),
    "decimal": ("Float64", "Int64", "String"),
    "bool": ("Bool",),
    "text": ("String", "Timestamp", "Date"),
    "aware": ("Timestamp",),
    "utc": ("Timestamp",),
    "naive": ("Timestamp",),
    "date": ("Date", "Timestamp"),
}
TIME_WIRES = ("int", "text", "aware", "utc", "naive", "date")  # what an event or created time can be


def wire_of_polars(dtype: pl.DataType) -> Wire | None:
    """The wire type of a Polars / Arrow column, or None when no feature dtype reads it."""
    if dtype == pl.Null:
        return NULL
    if dtype.is_integer():
        return INT
    if dtype.is_float():
        return FLOAT
    if isinstance(dtype, pl.Decimal):
        return DECIMAL
    if dtype == pl.Boolean:
        return BOOL
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return TEXT
    if isinstance(dtype, pl.Datetime):
        return NAIVE if dtype.time_zone is None else AWARE
    if dtype == pl.Date:
        return DATE
    if isinstance(dtype, pl.List | pl.Array):
        inner = wire_of_polars(dtype.inner)  # type: ignore[arg-type]
        return None if inner is None else Wire("list", inner)
    return None


def readable(wire: Wire, dtype: DType) -> bool:
    if wire.kind == "null":
        return True
    if wire.kind == "list" or dtype.inner is not None:
        return wire.kind == "list" and dtype.inner is not None and readable(wire.inner, dtype.inner)  # type: ignore[arg-type]
    return dtype.name in _ALLOWED.get(wire.kind, ())


def check_readable(wire: Wire | None, dtype: DType, *, where: str, raw: object) -> Wire:
    """``wire`` if a ``dtype`` feature can read it, else a one-line error naming ``where``."""
    if wire is not None and readable(wire, dtype):
        return wire
    if wire is None:
        raise DataError(f"{where}: its type {raw} cannot be read as any feature dtype")
    options = "List(...)" if wire.kind == "list" else ", ".join(_ALLOWED.get(wire.kind, ()))
    raise DataError(f"{where}: a {raw} column cannot be read as {dtype!r}; declare the feature as {options} "
                    f"(or convert the column in the source)")


@dataclass(frozen=True)
class Context:
    """Where values come from (for messages) and the zone declared for naive times (None: none)."""

    where: str
    zone_name: str | None
    location: str = ""  # where the source is defined, for messages

    @property
    def zone(self) -> ZoneInfo | None:
        return None if self.zone_name is None else ptime.zone(self.zone_name, what=self.where)

    def need_zone(self) -> ZoneInfo:
        tz = self.zone
        if tz is None:
            raise NaiveTimestampError(
                f"{self.where} holds timestamps without a time zone; store them with a zone or declare it with "
                f"timezone='UTC' (or the zone they are in) on the source"
                + (f" (defined at {self.location})" if self.location else "")
            )
        return tz


class BadValue(ValueError):
    """A value does not fit its dtype; its text completes "value ... ". Turned into a DataError by callers."""


class NaiveValue(BadValue):
    """A timestamp without a zone where none is declared (a NaiveTimestampError for the caller)."""


# --- scalar: one Python value from a driver -> storage form (semantics.values) -----------------------


def _int_value(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadValue("is not an integer")
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise BadValue("is outside the Int64 range")
    return v


def _integral(v: object) -> int:
    """A float or decimal that holds a whole number within the Int64 range, as an int."""
    try:
        d = decimal.Decimal(v) if not isinstance(v, decimal.Decimal) else v  # type: ignore[arg-type]
    except (decimal.InvalidOperation, TypeError, ValueError):
        raise BadValue("is not a number") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise BadValue("is not a whole number; declare the feature Float64")
    return _int_value(int(d))


def _float_value(v: object) -> float:
    if isinstance(v, bool):
        raise BadValue("is not a number")
    if isinstance(v, str):
        v = decimal.Decimal(v)
    try:
        return float(v)  # type: ignore[arg-type]
    except (OverflowError, ValueError, TypeError):
        raise BadValue("does not fit a Float64") from None


def _bool_value(v: object) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise BadValue("is not a boolean (only 0 and 1 read as booleans)")


def _seconds(v: object) -> int:
    return ptime.seconds_to_micros(_int_value(v))  # the range check of _time_scalar bounds it


def _time_scalar(kind: str, ctx: Context) -> Callable[[object], int]:
    """A function from one raw time value of wire ``kind`` to UTC µs (years 1 to 9999)."""
    one = _time_scalar_any(kind, ctx)

    def in_range(v: object) -> int:
        us = one(v)
        if not _MIN_US <= us <= _MAX_US:
            raise BadValue(_OUT_OF_RANGE)
        return us
    return in_range


def _time_scalar_any(kind: str, ctx: Context) -> Callable[[object], int]:
    if kind == "int":
        return _seconds
    if kind == "aware":
        def aware(v: object) -> int:
            if not isinstance(v, dt.datetime) or v.tzinfo is None:
                raise BadValue("is not a timestamp with a time zone")
            return ptime.to_micros(v.astimezone(ptime.UTC))
        return aware
    if kind == "utc":
        def utc(v: object) -> int:
            if not isinstance(v, dt.datetime):
                raise BadValue("is not a timestamp")
            return ptime.to_micros(v.replace(tzinfo=ptime.UTC) if v.tzinfo is None else v)
        return utc
    if kind == "naive":
        naive_zone = ctx.need_zone()

        def naive(v: object) -> int:
            if not isinstance(v, dt.datetime):
                raise BadValue("is not a timestamp")
            if v.tzinfo is not None:
                return ptime.to_micros(v.astimezone(ptime.UTC))
            return ptime.local_to_micros(v, naive_zone)
        return naive
    if kind == "date":
        date_zone = ctx.zone

        def date(v: object) -> int:
            if not isinstance(v, dt.date) or isinstance(v, dt.datetime):
                raise BadValue("is not a date")
            return ptime.date_to_micros(v, date_zone)
        return date
    if kind == "text":
        text_zone = ctx.zone

        def text(v: object) -> int:
            if not isinstance(v, str):
                raise BadValue("is not text")
            try:
                parsed = ptime.parse_iso(v)
            except ValueError:
                raise BadValue("is not an ISO-8601 timestamp (e.g. 2024-01-31T12:00:00+00:00)") from None
            if isinstance(parsed, dt.datetime):
                if parsed.tzinfo is not None:
                    return ptime.to_micros(parsed.astimezone(ptime.UTC))
                if text_zone is None:
                    raise NaiveValue("has no time zone; store it with one or declare timezone= on the source")
                return ptime.local_to_micros(parsed, text_zone)
            return ptime.date_to_micros(parsed, text_zone)
        return text
    raise AssertionError(kind)


def _date_scalar(kind: str) -> Callable[[object], int]:
    if kind == "date":
        def date(v: object) -> int:
            if not isinstance(v, dt.date) or isinstance(v, dt.datetime):
                raise BadValue("is not a date")
            return ptime.days_since_epoch(v)
        return date

    def text(v: object) -> int:
        try:
            return ptime.days_since_epoch(dt.date.fromisoformat(str(v).strip()))
        except ValueError:
            raise BadValue("is not an ISO-8601 date (e.g. 2024-01-31)") from None
    return text


def _text_value(v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, decimal.Decimal):
        return str(v)
    raise BadValue("is not text")


def scalar_reader(wire: Wire, dtype: DType, ctx: Context) -> Callable[[object], object]:
    """A function turning one raw value (None allowed) into storage form; raises ``BadValue``."""
    if wire.kind == "null":
        return lambda v: None
    if dtype.inner is not None:
        inner = scalar_reader(wire.inner, dtype.inner, ctx)  # type: ignore[arg-type]

        def as_list(v: object) -> object:
            if v is None:
                return None
            if not isinstance(v, list | tuple):
                raise BadValue("is not a list")
            return [inner(x) for x in v]
        return as_list
    name, kind = dtype.name, wire.kind
    one: Callable[[object], object]
    if name == "Int64":
        one = _int_value if kind == "int" else _integral
    elif name == "Float64":
        one = _float_value
    elif name == "Bool":
        one = _bool_value
    elif name == "String":
        one = _text_value
    elif name == "Timestamp":
        one = _time_scalar(kind, ctx)
    else:
        one = _date_scalar(kind)
    return lambda v: None if v is None else one(v)


# --- vectorized: a raw Polars column -> the feature's Polars type, with a "bad" mask ------------------

_WHOLE = re.compile(r"^\s*[+-]?\d+(\.0*)?\s*$")


@dataclass(frozen=True)
class Vector:
    """``value``: the column read as the dtype's Polars type; ``bad``: true where a value does not fit."""

    value: pl.Expr
    bad: pl.Expr | None


def _fits_int64_float(x: pl.Expr) -> pl.Expr:
    return x.is_finite() & (x == x.floor()) & (x >= float(_INT64_MIN)) & (x < float(2**63))


# Instants and days parity carries: those a Python datetime / date can hold (years 1 to 9999).
# Beyond them (PostgreSQL's 'infinity', a year-14645 Parquet value) a value is refused on every
# path, rather than read offline and then failing online.
_MIN_US = ptime.to_micros(dt.datetime.min.replace(tzinfo=ptime.UTC))
_MAX_US = ptime.to_micros(dt.datetime.max.replace(tzinfo=ptime.UTC))
_MIN_DAY, _MAX_DAY = ptime.days_since_epoch(dt.date.min), ptime.days_since_epoch(dt.date.max)
_OUT_OF_RANGE = "is outside the years 1 to 9999"


def _in_range(vec: Vector, low: int, high: int) -> Vector:
    out = (vec.value < low) | (vec.value > high)
    return Vector(pl.when(out).then(None).otherwise(vec.value), out if vec.bad is None else vec.bad | out)


def _time_vector(kind: str, raw: pl.DataType, x: pl.Expr, ctx: Context) -> Vector:
    """UTC µs (Int64) of a raw time column, within the years 1 to 9999."""
    return _in_range(_time_ticks(kind, raw, x, ctx), _MIN_US, _MAX_US)


def _time_ticks(kind: str, raw: pl.DataType, x: pl.Expr, ctx: Context) -> Vector:
    if kind == "int":
        wide = x.cast(pl.Int128)
        return Vector(wide.clip(-_MAX_SECONDS, _MAX_SECONDS).cast(pl.Int64()) * 1_000_000,
                      (wide < -_MAX_SECONDS) | (wide > _MAX_SECONDS))
    if kind in ("aware", "utc", "naive"):
        unit = raw.time_unit if isinstance(raw, pl.Datetime) else "us"
        per_us = {"ns": 1000, "us": 1, "ms": None}[unit]
        if kind == "naive" and isinstance(raw, pl.Datetime) and raw.time_zone is None:
            tz = ctx.need_zone()
            x = x.map_batches(lambda s: naive_to_utc(s, tz), return_dtype=pl.Datetime(unit, "UTC"))
        # µs since the epoch, floored (sub-µs parts of ns timestamps are dropped towards the past)
        ticks = x.dt.epoch(time_unit="us") if per_us is None else x.cast(pl.Int64()) // per_us
        return Vector(ticks, None)
    if kind == "date":
        date_zone = ctx.zone
        if date_zone is None:
            return Vector(x.cast(pl.Int32()).cast(pl.Int64()) * 86_400_000_000, None)
        # midnight as a wall time in the zone: the naive rule, vectorized (date_to_micros)
        midnight = x.cast(pl.Datetime("us")).map_batches(lambda s: naive_to_utc(s, date_zone),
                                                        return_dtype=pl.Datetime("us", "UTC"))
        return Vector(midnight.cast(pl.Int64()), None)
    return _scalar_vector(x, _time_scalar(kind, ctx), pl.Int64())


def naive_to_utc(series: pl.Series, tz: ZoneInfo) -> pl.Series:
    """Naive wall times in ``tz`` → UTC (``semantics.time``): Polars for the common case, the scalar
    rule for wall times skipped by a DST change (which Polars can only turn into null)."""
    out = series.dt.replace_time_zone(tz.key, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    gaps = (out.is_null() & series.is_not_null()).arg_true()
    if len(gaps):
        fixed = [ptime.from_micros(ptime.local_to_micros(w, tz)) for w in series.gather(gaps).to_list()]
        out = out.scatter(gaps, pl.Series(fixed, dtype=pl.Datetime("us", "UTC")).cast(out.dtype))
    return out


def _scalar_series(series: pl.Series, one: Callable[[object], object], dtype: pl.DataType) -> pl.Series:
    """Apply a scalar reader to a Series; values it refuses become null and are reported by
    ``_scalar_vector``'s mask."""
    out: list[object] = []
    for v in series.to_list():
        try:
            out.append(None if v is None else one(v))
        except BadValue:
            out.append(None)
    return pl.Series(series.name, out, dtype=dtype)


def _scalar_vector(x: pl.Expr, one: Callable[[object], object], dtype: pl.DataType) -> Vector:
    """The scalar rule value by value; a value it refuses becomes null, and is bad (a scalar reader
    returns None only for None)."""
    value = x.map_batches(lambda s: _scalar_series(s, one, dtype), return_dtype=dtype)
    return Vector(value, x.is_not_null() & value.is_null())


def _only_values(vec: Vector, x: pl.Expr) -> Vector:
    """A null raw value is null, never bad; an unknown check is bad."""
    return vec if vec.bad is None else Vector(vec.value, x.is_not_null() & vec.bad.fill_null(True))


def vector_reader(wire: Wire, dtype: DType, raw: pl.DataType, x: pl.Expr, ctx: Context) -> Vector:
    """Read column ``x`` (Polars type ``raw``, wire ``wire``) as ``dtype``'s Polars type."""
    vec = _vector(wire, dtype, raw, x, ctx)
    return _only_values(vec, x)


def _vector(wire: Wire, dtype: DType, raw: pl.DataType, x: pl.Expr, ctx: Context) -> Vector:
    target = polars_type(dtype)
    if wire.kind == "null":
        return Vector(x.cast(target), None)
    if dtype.inner is not None:
        if raw == polars_type(dtype) or (wire.inner is not None and wire.inner.kind == "null"):
            return Vector(x.cast(target), None)
        # Lists are rare and short: the scalar rule, value by value.
        stored = _scalar_vector(x, scalar_reader(wire, dtype, ctx), pl.List(storage_polars_type(dtype.inner)))
        return Vector(stored.value.cast(target), stored.bad)
    name, kind = dtype.name, wire.kind
    if name == "Int64":
        if kind == "int":
            if raw in (pl.Int64, pl.Int32, pl.Int16, pl.Int8, pl.UInt32, pl.UInt16, pl.UInt8):
                return Vector(x.cast(pl.Int64()), None)  # always in range
            wide = x.cast(pl.Int128)
            return Vector(wide.clip(_INT64_MIN, _INT64_MAX).cast(pl.Int64()), (wide < _INT64_MIN) | (wide > _INT64_MAX))
        if kind == "float":
            fits = _fits_int64_float(x)
            return Vector(pl.when(fits).then(x).otherwise(None).cast(pl.Int64()), ~fits)
        text = x.cast(pl.String)
        whole = text.str.contains(_WHOLE.pattern)
        digits = text.str.strip_chars().str.replace(r"\.0*$", "")
        parsed = pl.when(whole).then(digits).otherwise(None).cast(pl.Int128, strict=False)
        fits = whole & parsed.is_not_null() & (parsed >= _INT64_MIN) & (parsed <= _INT64_MAX)
        return Vector(pl.when(fits).then(parsed).otherwise(None).cast(pl.Int64()), ~fits)
    if name == "Float64":
        if kind == "decimal":
            return Vector(x.cast(pl.String).cast(pl.Float64), None)  # text → nearest double (correctly rounded)
        return Vector(x.cast(pl.Float64), None)  # ints: nearest double; a 32-bit float widens exactly
    if name == "Bool":
        if kind == "bool":
            return Vector(x, None)
        return Vector(pl.when(x == 1).then(True).when(x == 0).then(False).otherwise(None), ~x.is_in([0, 1]))
    if name == "String":
        return Vector(x.cast(pl.String), None)
    if name == "Timestamp":
        vec = _time_vector(kind, raw, x, ctx)
        return Vector(vec.value.cast(pl.Datetime("us", "UTC")), vec.bad)
    if kind == "date":
        in_range = _in_range(Vector(x.cast(pl.Int32()), None), _MIN_DAY, _MAX_DAY)
        return Vector(in_range.value.cast(pl.Date()), in_range.bad)
    days = _scalar_vector(x, _date_scalar(kind), pl.Int32())
    return Vector(days.value.cast(pl.Date), days.bad)


def time_reader(wire: Wire, raw: pl.DataType, x: pl.Expr, ctx: Context) -> Vector:
    """An event or created time column as UTC µs (Int64)."""
    if wire.kind == "null":
        return Vector(x.cast(pl.Int64()), None)
    if wire.kind not in TIME_WIRES:
        raise DataError(f"{ctx.where}: a {raw} column cannot be an event or created time; use a timestamp, a date, "
                        f"Unix seconds (an integer) or ISO-8601 text")
    vec = _time_vector(wire.kind, raw, x, ctx)
    return _only_values(vec, x)


def parameter(wire: Wire, dtype: DType, stored: object) -> object:
    """A key in storage form as a query parameter a ``wire`` column compares with — the inverse of
    the scalar reader for the key wires a database can compare exactly (aware times, dates)."""
    if dtype.name == "Timestamp" and isinstance(stored, int):
        stamp = ptime.from_micros(stored)
        return stamp if wire.kind == "aware" else stamp.replace(tzinfo=None)  # "utc": naive UTC
    if dtype.name == "Date" and isinstance(stored, int):
        return ptime.date_from_days(stored)
    return stored


def wall_reader(wire: Wire, raw: pl.DataType, x: pl.Expr) -> pl.Expr | None:
    """The stored wall time (µs, as if it were UTC) of a naive time column — the tie-breaker of
    ``ordering.EVENT_WALL`` — or None when the column holds no wall times."""
    if wire.kind == "naive" and isinstance(raw, pl.Datetime):
        per_us = {"ns": 1000, "us": 1, "ms": None}[raw.time_unit]
        return x.dt.epoch(time_unit="us") if per_us is None else x.cast(pl.Int64()) // per_us
    if wire.kind == "text":
        def wall(v: object) -> int | None:
            try:
                parsed = ptime.parse_iso(str(v))
            except ValueError:
                return None  # reported by the time reader
            if isinstance(parsed, dt.datetime):
                return ptime.to_micros(parsed.astimezone(ptime.UTC) if parsed.tzinfo else parsed.replace(tzinfo=ptime.UTC))
            return ptime.days_since_epoch(parsed) * 86_400_000_000
        return x.map_batches(lambda s: pl.Series([None if v is None else wall(v) for v in s.to_list()], dtype=pl.Int64),
                             return_dtype=pl.Int64())
    return None


def time_scalar(wire: Wire, ctx: Context) -> Callable[[object], int | None]:
    if wire.kind not in TIME_WIRES:
        raise DataError(f"{ctx.where}: a {wire!r} column cannot be an event or created time")
    one = _time_scalar(wire.kind, ctx)
    return lambda v: None if v is None else one(v)
