"""Normalizing raw source columns: timestamps to UTC µs (naive ones rejected unless the source
declares a zone) and values cast to their feature dtypes. Every connector calls this."""

from __future__ import annotations

import difflib

import polars as pl

from parity.define.sources import Source
from parity.errors import DataError, MissingColumnError, NaiveTimestampError
from parity.ports.source import ScanRequest
from parity.semantics import asof
from parity.semantics.ordering import CREATED, EVENT, SEQUENCE
from parity.semantics.values import polars_type


def check_columns(available: list[str], source: Source, request: ScanRequest, where_source: str) -> None:
    needed = [source.event_time] + ([source.created_time] if source.created_time else [])
    needed += [col for col, _ in request.columns.values()]
    for col in needed:
        if col not in available:
            close = difflib.get_close_matches(col, available, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            user = next((name for name, (c, _) in request.columns.items() if c == col), None)
            by = f" needed by {user}" if user else " (its event/created time)"
            raise MissingColumnError(
                f"{where_source} has no column {col!r}{by} in {request.where or 'a feature view'}"
                f"{hint} (its columns: {available}; source defined at {source.location})"
            )


def utc_micros(expr: pl.Expr, dtype: pl.DataType, source: Source, column: str) -> pl.Expr:
    """An expression giving UTC µs for a timestamp column of any common raw type."""
    if dtype == pl.Null:  # an empty or all-null column
        return expr.cast(pl.Int64)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            if source.timezone is None:
                raise NaiveTimestampError(
                    f"source {source.name!r}: column {column!r} holds timestamps without a time zone; "
                    f"store them with a zone or declare it with timezone='UTC' (or the zone they are in) "
                    f"on the source (defined at {source.location})"
                )
            expr = expr.dt.replace_time_zone(source.timezone)
        return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us").cast(pl.Int64)
    if isinstance(dtype, pl.Date):
        return expr.cast(pl.Datetime("us")).cast(pl.Int64)
    if dtype == pl.String:
        parsed = expr.str.to_datetime(time_unit="us", time_zone=None if source.timezone else "UTC")
        if source.timezone:
            parsed = parsed.dt.replace_time_zone(source.timezone).dt.convert_time_zone("UTC")
        return parsed.cast(pl.Int64)
    if dtype.is_integer():
        return expr.cast(pl.Int64) * 1_000_000  # integers are Unix seconds
    raise DataError(f"source {source.name!r}: column {column!r} of type {dtype} is not a timestamp")


def normalize(raw: pl.LazyFrame, source: Source, request: ScanRequest) -> pl.DataFrame:
    """Turn a raw frame (source columns + ``__seq``) into the ScanRequest's result."""
    schema = raw.collect_schema()
    exprs = [pl.col(SEQUENCE).cast(pl.Int64)]
    exprs.append(utc_micros(pl.col(source.event_time), schema[source.event_time], source, source.event_time).alias(EVENT))
    if source.created_time:
        ct = source.created_time
        exprs.append(utc_micros(pl.col(ct), schema[ct], source, ct).alias(CREATED))
    else:
        exprs.append(pl.lit(None, dtype=pl.Int64).alias(CREATED))
    for name, (col, dtype) in request.columns.items():
        target = polars_type(dtype)
        raw_type = schema[col]
        if dtype.name == "Timestamp" and raw_type != target:
            expr = utc_micros(pl.col(col), raw_type, source, col).cast(pl.Datetime("us", "UTC"))
        else:
            expr = pl.col(col).cast(target, strict=True)
        exprs.append(expr.alias(name))
    frame = raw.select(exprs)
    if request.visible_after_us is not None or request.visible_until_us is not None:
        visible = asof.visible_at_expr(asof.uses_created(source))
        if request.visible_after_us is not None:
            frame = frame.filter(visible > request.visible_after_us)
        if request.visible_until_us is not None:
            frame = frame.filter(visible <= request.visible_until_us)
    try:
        return frame.collect()
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"source {source.name!r} ({request.where}): cannot read or convert its columns: {exc}") from None
