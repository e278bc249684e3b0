"""Reading a spine: Arrow, pandas, Polars or a Parquet path → checked keys and UTC µs times."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from parity.define.dtypes import DType
from parity.errors import DataError, EntityKeyError, MissingColumnError, NaiveTimestampError
from parity.semantics.values import polars_type


@dataclass(frozen=True)
class Spine:
    table: pa.Table  # exactly what the user gave, to pass through unchanged
    keys: pl.DataFrame  # one column per root key, named by key, cast to the key dtype
    times_us: pl.Series  # Int64 µs UTC


def to_arrow(spine: object) -> pa.Table:
    if isinstance(spine, pa.Table):
        return spine
    if isinstance(spine, (str, os.PathLike)):
        import pyarrow.parquet as pq

        if not os.path.exists(spine):
            raise DataError(f"spine file {os.fspath(spine)!r} does not exist")
        return pq.read_table(spine)
    if isinstance(spine, pl.DataFrame):
        return spine.to_arrow()
    if type(spine).__module__.startswith("pandas"):
        return pa.Table.from_pandas(spine, preserve_index=False)  # type: ignore[arg-type]
    raise DataError(
        f"a spine must be a pyarrow Table, a pandas or Polars DataFrame, or a Parquet path; got {type(spine).__name__}"
    )


def read_spine(
    spine: object,
    *,
    timestamp_column: str,
    keys: Mapping[str, DType],
    key_columns: Mapping[str, str] | None = None,
    timezone: str | None = None,
    reserved: Sequence[str] = (),
) -> Spine:
    """Check the spine and extract what the engine needs.

    ``key_columns`` maps entity key names to spine columns when they differ; ``timezone`` declares
    the zone of a naive timestamp column.
    """
    table = to_arrow(spine)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    names = frame.columns
    mapping = dict(key_columns or {})
    clash = sorted(set(names) & set(reserved))
    if clash:
        raise DataError(f"the spine already has column(s) {clash}, which the training set would add; rename them")
    if timestamp_column not in names:
        raise MissingColumnError(
            f"the spine has no timestamp column {timestamp_column!r} (its columns: {names}); "
            f"pass timestamp_column= to name it"
        )
    ts = frame[timestamp_column]
    if isinstance(ts.dtype, pl.Datetime):
        if ts.dtype.time_zone is None:
            if timezone is None:
                raise NaiveTimestampError(
                    f"spine column {timestamp_column!r} holds timestamps without a time zone; make them "
                    f"timezone-aware or declare their zone (timezone='UTC')"
                )
            ts = ts.dt.replace_time_zone(timezone)
        times = ts.dt.convert_time_zone("UTC").dt.cast_time_unit("us").cast(pl.Int64)
    else:
        raise DataError(
            f"spine column {timestamp_column!r} has type {ts.dtype}; it must hold timestamps (datetime)"
        )
    nulls = times.is_null()
    if nulls.any():
        raise DataError(f"spine column {timestamp_column!r} is null in row {int(nulls.arg_true()[0])}; every row needs a time")
    out = {}
    for key, dtype in keys.items():
        column = mapping.get(key, key)
        if column not in names:
            raise MissingColumnError(
                f"the spine has no column {column!r} for entity key {key!r} (its columns: {names}); "
                f"add it or map it with key_columns={{{key!r}: '<spine column>'}}"
            )
        try:
            out[key] = frame[column].cast(polars_type(dtype), strict=True)
        except pl.exceptions.PolarsError:
            raise EntityKeyError(
                f"spine column {column!r} has type {frame[column].dtype}, which cannot be read as key "
                f"{key!r} of type {dtype!r}"
            ) from None
    return Spine(table, pl.DataFrame(out), times.alias("__t"))
