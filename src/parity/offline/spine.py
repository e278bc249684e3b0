"""Reading a spine: Arrow, pandas, Polars or a Parquet path → checked keys and UTC µs times."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from parity.define.dtypes import DType
from parity.errors import DataError, MissingColumnError, NaiveTimestampError, one_line
from parity.semantics import keys as pkeys
from parity.semantics import reading
from parity.semantics import time as ptime
from parity.semantics.asof import PROBE_TIME


@dataclass(frozen=True)
class Spine:
    table: pa.Table  # exactly what the user gave, to pass through unchanged
    keys: pl.DataFrame  # one column per root key, named by key, checked and canonical (semantics.keys)
    times_us: pl.Series  # Int64 µs UTC


def _read_parquet(path: str) -> pa.Table:
    import pyarrow.parquet as pq

    if not os.path.exists(path):
        raise DataError(f"spine file {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"spine {path!r} is a folder; give a Parquet file")
    if os.path.getsize(path) == 0:
        raise DataError(f"spine file {path!r} is empty (0 bytes); give a Parquet file")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"spine file {path!r} is not a readable Parquet file ({one_line(str(exc))})") from None


def to_arrow(spine: object) -> pa.Table:
    if isinstance(spine, pa.Table):
        return spine
    if isinstance(spine, str | os.PathLike):
        return _read_parquet(os.fspath(spine))
    if isinstance(spine, pl.DataFrame):
        return spine.to_arrow()
    if type(spine).__module__.startswith("pandas"):
        return pa.Table.from_pandas(spine, preserve_index=False)
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
    the zone of a naive timestamp column. Key columns must have their key's type (``semantics.keys``):
    nothing is cast, so a float or a string never matches another entity's key.
    """
    if timezone is not None:
        ptime.zone(timezone, what="the spine's timezone")
    table = to_arrow(spine)
    try:
        frame = pl.from_arrow(table)
    except (pl.exceptions.PolarsError, pa.ArrowException) as exc:
        raise DataError(f"the spine cannot be read: {one_line(str(exc))}") from None
    if not isinstance(frame, pl.DataFrame):
        raise DataError("the spine must be a table, not a single column")
    names = frame.columns
    mapping = dict(key_columns or {})
    unknown = sorted(set(mapping) - set(keys))
    if unknown:
        raise DataError(f"key_columns names {unknown}, which are not keys of the requested features "
                        f"(their keys: {sorted(keys)})")
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
            ts = reading.naive_to_utc(ts, ptime.zone(timezone, what="the spine's timezone"))
        times = ts.dt.convert_time_zone("UTC").dt.epoch(time_unit="us")
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
        out[key] = pkeys.spine_key(dtype, frame[column], column=column, key=key)
    return Spine(table, pl.DataFrame(out, height=frame.height) if out else pl.DataFrame(), times.alias(PROBE_TIME))
