"""Delta Lake tables (``pip install "parity[delta]"``), read as the Parquet files their log lists.

The log (read by ``deltalake``, delta-rs) gives the table's files at its latest version or the
source's ``version``, when each was added and its partition values; the rows are then read by the
Parquet reader's own path (local: Polars; on Spark: Spark's reader over the same file list), so a
Delta table answers as a Parquet folder of the same files would. Ingestion order
(``ordering.SEQUENCE``) is the files' add time, then path, then row order.

Only tables whose rows are all in their files as they stand are read: deletion vectors (rows
deleted without rewriting a file) and column mapping (columns named otherwise in the files) are
refused, with what to do, rather than answered from the wrong rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import polars as pl

from parity.connectors.parquet import ParquetReader
from parity.define.sources import DeltaSource
from parity.errors import ConfigError, DataError, MissingExtraError, one_line


@dataclass(frozen=True)
class Listing:
    """A version of a table: its files in ingestion order, each with its partition values."""

    version: int
    files: list[str]
    partitions: dict[str, pl.Series]  # partition column -> its value in each file (aligned with ``files``)
    schema: pl.Schema  # the table's columns, partition columns included
    rows: int  # as the log counts them


class DeltaReader(ParquetReader):
    """A Parquet reader of the files a Delta log lists (repeatable like it: a version's files
    never change, and ``snapshot`` holds the version read)."""

    evolving_schema = True  # a column added by a later version is null in the files written before it

    def __init__(self, source: DeltaSource, base_dir: str) -> None:
        super().__init__(source, base_dir)
        self.delta = source
        if "://" in source.path:
            raise ConfigError(f"{self.describe()}: a Delta table is read from a local path for now (its log and "
                              f"files on this machine's file system); copy it here or use a ParquetSource of its "
                              f"files (source defined at {source.location})")

    def describe(self) -> str:
        at = f" at version {self.delta.version}" if self.delta.version is not None else ""
        return f"delta source {self.delta.name!r} ({self.delta.path}{at})"

    def listing(self) -> Listing:
        """The table's files as its log lists them now (read again each time: a project lives
        longer than a version; the passes of one run compare ``snapshot``s, which hold it)."""
        try:
            from deltalake import DeltaTable
        except ImportError:
            raise MissingExtraError("deltalake", "delta") from None
        try:
            table = DeltaTable(self.path, version=self.delta.version)
            actions = pl.DataFrame(table.get_add_actions(flatten=True))
            metadata = table.metadata()
            reader_features = table.protocol().reader_features or []
            # only the files that have one are listed; read only when the table may have any
            vectors = pl.DataFrame(table.deletion_vectors().read_all()) if "deletionVectors" in reader_features \
                else pl.DataFrame()
            schema = _schema_of(table)
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own error types for a missing or bad log
            raise DataError(f"{self.describe()}: cannot read it as a Delta table: {one_line(str(exc))[:300]} "
                            f"(source defined at {self.delta.location})") from None
        mapping = metadata.configuration.get("delta.columnMapping.mode", "none")
        if mapping != "none":
            raise DataError(f"{self.describe()}: its columns are mapped ({mapping!r}), so its files name them "
                            f"otherwise; rewrite the table without column mapping to read it")
        if vectors.height:
            raise DataError(f"{self.describe()}: some of its rows are deleted by deletion vectors, not in its files; "
                            f"purge them first (REORG TABLE ... APPLY (PURGE)) to read it")
        actions = actions.sort("modification_time", "path")
        files = [self._local(path) for path in actions["path"].to_list()]
        partitions = {c: actions[f"partition.{c}"] for c in metadata.partition_columns}
        return Listing(table.version(), files, partitions, schema, int(actions["num_records"].sum()))

    def _local(self, path: str) -> str:
        """A file of the log as this machine names it: the log's paths are URI-encoded (a partition
        value ``a b`` is in folder ``a%20b``, logged as ``a%2520b``), relative to the table or
        absolute ``file:`` URIs."""
        parsed = urlsplit(path)
        if parsed.scheme == "file":
            return unquote(parsed.path)
        if parsed.scheme:
            raise DataError(f"{self.describe()}: its log lists a file elsewhere ({path}); a Delta table is read from "
                            f"local files for now")
        return os.path.join(self.path, unquote(path))

    def _files(self) -> list[str]:
        return self.listing().files

    def _frame(self) -> tuple[pl.LazyFrame, pl.Schema]:
        listed = self.listing()  # one listing for the files and their partition values
        if not listed.files:
            return pl.LazyFrame(schema=listed.schema), listed.schema
        try:
            frames = [pl.scan_parquet(path).with_columns(
                pl.lit(values[i], dtype=values.dtype).alias(name) for name, values in listed.partitions.items())
                for i, path in enumerate(listed.files)]
            frame = pl.concat(frames, how="diagonal_relaxed")
            return frame, frame.collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{self.describe()}: cannot read its files as Parquet: {one_line(str(exc))}") from None

    def files_and_constants(self) -> tuple[list[str], dict[str, pl.Series]]:
        listed = self.listing()
        return listed.files, listed.partitions

    def estimate_rows(self) -> int | None:
        """The rows of the version's files, as its log counts them (no file is opened)."""
        return self.listing().rows

    def snapshot(self) -> tuple[tuple[str, int, int], ...]:
        listed = self.listing()
        return (("version", listed.version, 0), *self._stats(listed.files))


def _schema_of(table: Any) -> pl.Schema:
    """The table's columns as Polars types (delta-rs hands them over as Arrow)."""
    import pyarrow as pa

    return pl.DataFrame(pa.schema(table.schema().to_arrow()).empty_table()).schema
