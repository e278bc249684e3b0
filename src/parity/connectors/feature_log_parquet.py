"""The served-value log as Parquet files in the project: ``.parity/feature_log/date=YYYY-MM-DD/
part-<pid>-<first µs>-<n>.parquet``, partitioned by the day it was served; ``read`` gives the closed
parts back as one table."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import time
import uuid
from collections.abc import Mapping, Sequence

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from parity.errors import DataError

SCHEMA = pa.schema([("request_id", pa.string()), ("request_time_us", pa.int64()), ("served_at_us", pa.int64()),
                    ("principal", pa.string()), ("row", pa.int32()), ("entity", pa.string()),
                    ("values", pa.string()), ("statuses", pa.string()), ("versions", pa.string())])


_DAY_US = 86_400_000_000


def served_in(frame: pl.DataFrame, since_us: int | None, until_us: int | None) -> pl.DataFrame:
    """The log rows served in [since, until) (None: unbounded)."""
    if since_us is not None:
        frame = frame.filter(pl.col("served_at_us") >= since_us)
    if until_us is not None:
        frame = frame.filter(pl.col("served_at_us") < until_us)
    return frame


def cell(text: object, column: str) -> dict[str, object]:
    """One JSON cell of the log (``entity``, ``values``, ``statuses``, ``versions``) as the object it
    holds, or a one-line error naming the column: a part file written by something else."""
    try:
        value = orjson.loads(str(text) if text is not None else "null")
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise DataError(f"the feature log's {column} column holds {str(text)!r:.60}, not a JSON object: a part file "
                        "was written by something else; move it out of .parity/feature_log")
    return value


def log_dir(root: str) -> str:
    return os.path.join(root, ".parity", "feature_log")


class ParquetFeatureLog:
    """Batches are row groups of an open part file; a part is closed (footer written, renamed from
    its temporary name: readers see it whole or not at all) after ``part_seconds`` or ``part_rows``,
    when the day changes, and on ``close``. A crash loses the part being written, never a closed one."""

    def __init__(self, root: str, *, part_seconds: float = 60.0, part_rows: int = 1_000_000) -> None:
        self.dir = log_dir(root)
        self.part_seconds, self.part_rows = part_seconds, part_rows
        self._parts = itertools.count()
        self._writer: pq.ParquetWriter | None = None
        self._tmp = self._final = ""
        self._day = ""
        self._opened = 0.0
        self._rows = 0
        self._swept = False

    def write(self, columns: Mapping[str, Sequence[object]]) -> None:
        if not self._swept:
            self._sweep()
        served = list(columns["served_at_us"])
        days = [int(us) // _DAY_US for us in served]  # type: ignore[call-overload]
        start = 0
        for i in range(1, len(days) + 1):  # a batch across midnight: each day's rows in that day's part
            if i == len(days) or days[i] != days[start]:
                self._write_day({name: list(values)[start:i] for name, values in columns.items()})
                start = i

    def _sweep(self) -> None:
        """Remove the temporary parts of writers that died (untouched far longer than a part stays open)."""
        self._swept = True
        cutoff = time.time() - max(2 * self.part_seconds, 3600.0)
        for folder, _, names in os.walk(self.dir):
            for name in names:
                path = os.path.join(folder, name)
                if name.startswith(".part-") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if os.stat(path).st_mtime < cutoff:
                            os.remove(path)

    def _write_day(self, columns: Mapping[str, Sequence[object]]) -> None:
        table = pa.table({field.name: pa.array(columns[field.name], field.type) for field in SCHEMA}, schema=SCHEMA)
        first = table.column("served_at_us")[0].as_py()
        day = dt.datetime.fromtimestamp(first / 1e6, dt.UTC).date().isoformat()
        if self._writer is not None and (day != self._day or self._rows >= self.part_rows
                                         or time.monotonic() - self._opened >= self.part_seconds):
            self.close()
        if self._writer is None:
            folder = os.path.join(self.dir, f"date={day}")
            os.makedirs(folder, exist_ok=True)
            # unique across processes, hosts sharing the folder (pid 1 in every container) and projects
            name = f"part-{first}-{os.getpid()}-{uuid.uuid4().hex[:12]}-{next(self._parts)}.parquet"
            self._tmp, self._final = os.path.join(folder, f".{name}.tmp"), os.path.join(folder, name)
            self._writer = pq.ParquetWriter(self._tmp, SCHEMA, compression="zstd")
            self._day, self._opened, self._rows = day, time.monotonic(), 0
        try:
            self._writer.write_table(table)
        except BaseException:
            self._abandon()  # a part that failed a write is not trusted with the next one
            raise
        self._rows += table.num_rows

    def _abandon(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        with contextlib.suppress(OSError):
            os.remove(self._tmp)

    def idle(self) -> None:
        """Nothing to write this tick: close a part that is due, so it becomes readable."""
        if self._writer is not None and time.monotonic() - self._opened >= self.part_seconds:
            self.close()

    def close(self) -> None:
        """Close the open part: footer, fsync, rename — readable whole, or (on an error) gone."""
        if self._writer is None:
            return
        try:
            self._writer.close()
            with open(self._tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(self._tmp, self._final)
            self._writer = None
        except BaseException:
            self._abandon()
            raise

    def read(self, since_us: int | None = None, until_us: int | None = None) -> pa.Table:
        """Every closed part (the one being written is read once it is closed); with a range, only
        the days that can hold rows served in [since, until) (rows are still filtered by the reader)."""
        first = None if since_us is None else _day(since_us)
        last = None if until_us is None else _day(until_us - 1)
        paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(self.dir)
                       for name in names if name.endswith(".parquet") and not name.startswith(".")
                       and _within(os.path.basename(folder), first, last))
        if not paths:
            return SCHEMA.empty_table()
        return pa.concat_tables([pq.read_table(p, schema=SCHEMA) for p in paths])


def _day(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC).date().isoformat()


def _within(folder: str, first: str | None, last: str | None) -> bool:
    if not folder.startswith("date="):
        return True  # not a day's folder: read, the reader filters
    day = folder[5:]
    return (first is None or day >= first) and (last is None or day <= last)
