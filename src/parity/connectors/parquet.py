"""Parquet files and folders, read lazily with Polars (projection and predicate pushdown)."""

from __future__ import annotations

import os
from collections.abc import Callable

import polars as pl

from parity.connectors.frames import check_columns, check_types, normalize, spill
from parity.define.sources import DeltaSource, ParquetSource
from parity.errors import ConfigError, DataError, one_line
from parity.ports.source import Scan, ScanRequest
from parity.semantics.ordering import SEQUENCE


class ParquetReader:
    repeatable_scans = True  # the files are read in one sorted order, rows numbered in it
    evolving_schema = False  # whether the files' columns may differ (one table's versions), read as their union

    def __init__(self, source: ParquetSource | DeltaSource, base_dir: str) -> None:
        self.source = source
        remote = "://" in source.path  # a cluster's path (s3a://, hdfs://): Spark reads it, the footer is not read here
        self.path = source.path if os.path.isabs(source.path) or remote else os.path.join(base_dir, source.path)

    def describe(self) -> str:
        return f"parquet source {self.source.name!r} ({self.source.path})"

    def _files(self) -> list[str]:
        if os.path.isdir(self.path):
            files = sorted(
                os.path.join(root, f)
                for root, _, names in os.walk(self.path)
                for f in names
                if f.endswith(".parquet")
            )
            if not files:
                raise ConfigError(f"{self.describe()}: folder {self.path} holds no .parquet files")
            return files
        if not os.path.exists(self.path):
            raise ConfigError(
                f"{self.describe()}: {self.path} does not exist (source defined at {self.source.location})"
            )
        return [self.path]

    def _frame(self) -> tuple[pl.LazyFrame, pl.Schema]:
        frame = pl.scan_parquet(self._files())
        try:
            return frame, frame.collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{self.describe()}: cannot read it as Parquet: {one_line(str(exc))}") from None

    def files_and_constants(self) -> tuple[list[str], dict[str, pl.Series]]:
        """The files in reading order, and the columns whose values are not in the files but given
        per file (aligned with the files): none for plain Parquet (a Delta table's partition
        columns, ``connectors.delta``)."""
        return self._files(), {}

    def snapshot(self) -> tuple[tuple[str, int, int], ...]:
        """The files as they are now (path, size, modification time in ns): a file written between
        two snapshots changes it, so equal snapshots frame scans of the same rows."""
        return self._stats(self._files())

    def _stats(self, files: list[str]) -> tuple[tuple[str, int, int], ...]:
        try:
            return tuple((path, (st := os.stat(path)).st_size, st.st_mtime_ns) for path in files)
        except OSError as exc:
            raise DataError(f"{self.describe()}: cannot read it: {one_line(str(exc))}") from None

    def estimate_rows(self) -> int | None:
        """The rows of the files, from their footers (no row is read); None for a cluster's path."""
        import pyarrow.parquet as pq

        if "://" in self.path:
            return None

        try:
            return sum(pq.ParquetFile(path).metadata.num_rows for path in self._files())
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.describe()}: cannot read it as Parquet: {one_line(str(exc))}") from None

    def check(self, request: ScanRequest) -> None:
        _, schema = self._frame()
        check_columns(schema.names(), self.source, request, self.describe())
        check_types(schema, self.source, request, self.describe())

    def scan(self, request: ScanRequest) -> Scan:
        frame, schema = self._frame()
        check_columns(schema.names(), self.source, request, self.describe())
        return normalize(frame.with_row_index(SEQUENCE), self.source, request, self.describe())

    def scan_partitions(self, request: ScanRequest, count: int, folder: str) -> list[Callable[[], Scan]]:
        """The scan of ``request`` in ``count`` key partitions, read in one pass and kept in
        ``folder`` until each partition's function reads it back (``frames.spill``)."""
        frame, schema = self._frame()
        check_columns(schema.names(), self.source, request, self.describe())
        return spill(frame.with_row_index(SEQUENCE), self.source, request, self.describe(), count, folder)
