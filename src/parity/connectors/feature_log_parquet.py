"""The served-value log as Parquet files in the project: ``.parity/feature_log/date=YYYY-MM-DD/
part-<pid>-<first µs>-<n>.parquet``, partitioned by the day it was served; ``read`` gives the closed
parts back as one table."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import time
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("request_id", pa.string()), ("request_time_us", pa.int64()), ("served_at_us", pa.int64()),
                    ("principal", pa.string()), ("row", pa.int32()), ("entity", pa.string()),
                    ("values", pa.string()), ("statuses", pa.string()), ("versions", pa.string())])


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

    def write(self, columns: Mapping[str, Sequence[object]]) -> None:
        table = pa.table({field.name: pa.array(columns[field.name], field.type) for field in SCHEMA}, schema=SCHEMA)
        first = table.column("served_at_us")[0].as_py()
        day = dt.datetime.fromtimestamp(first / 1e6, dt.UTC).date().isoformat()
        if self._writer is not None and (day != self._day or self._rows >= self.part_rows
                                         or time.monotonic() - self._opened >= self.part_seconds):
            self.close()
        if self._writer is None:
            folder = os.path.join(self.dir, f"date={day}")
            os.makedirs(folder, exist_ok=True)
            name = f"part-{os.getpid()}-{first}-{next(self._parts)}.parquet"
            self._tmp, self._final = os.path.join(folder, f".{name}.tmp"), os.path.join(folder, name)
            self._writer = pq.ParquetWriter(self._tmp, SCHEMA, compression="zstd")
            self._day, self._opened, self._rows = day, time.monotonic(), 0
        self._writer.write_table(table)
        self._rows += table.num_rows

    def idle(self) -> None:
        """Nothing to write this tick: close a part that is due, so it becomes readable."""
        if self._writer is not None and time.monotonic() - self._opened >= self.part_seconds:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            os.replace(self._tmp, self._final)

    def read(self) -> pa.Table:
        """Every closed part (the one being written is read once it is closed)."""
        paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(self.dir)
                       for name in names if name.endswith(".parquet") and not name.startswith("."))
        if not paths:
            return SCHEMA.empty_table()
        return pa.concat_tables([pq.read_table(p, schema=SCHEMA) for p in paths])
