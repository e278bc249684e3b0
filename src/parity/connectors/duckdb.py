"""A table in a DuckDB database file, opened read-only; ingestion order is DuckDB's rowid."""

from __future__ import annotations

import os

import polars as pl

from parity.connectors.frames import check_columns, check_types, normalize
from parity.define.sources import DuckDBSource
from parity.errors import ConfigError, DataError, one_line
from parity.ports.source import Scan, ScanRequest
from parity.semantics.ordering import SEQUENCE

# DuckDB would try to download extensions it autoloads; there may be no network.
DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class DuckDBReader:
    def __init__(self, source: DuckDBSource, base_dir: str) -> None:
        self.source = source
        self.path = source.database if os.path.isabs(source.database) else os.path.join(base_dir, source.database)
        # ``schema.table`` (or ``catalog.schema.table``) names a table in a schema.
        self.table_sql = ".".join(_quote(part) for part in source.table.split("."))

    def describe(self) -> str:
        return f"duckdb source {self.source.name!r} ({self.source.database}, table {self.source.table})"

    def _read(self, request: ScanRequest, *, limit: int | None) -> tuple[pl.DataFrame, pl.Schema]:
        import duckdb

        if not os.path.exists(self.path):
            raise ConfigError(f"{self.describe()}: database file {self.path} does not exist")
        try:
            with duckdb.connect(self.path, read_only=True, config=DUCKDB_CONFIG) as con:
                try:
                    columns = [r[0] for r in con.execute(f"DESCRIBE {self.table_sql}").fetchall()]
                except duckdb.CatalogException:
                    raise ConfigError(f"{self.describe()}: no table {self.source.table!r}") from None
                check_columns(columns, self.source, request, self.describe())
                wanted = {self.source.event_time, *(c for c, _ in request.columns.values())}
                if self.source.created_time:
                    wanted.add(self.source.created_time)
                select = ", ".join(_quote(c) for c in sorted(wanted))
                table = con.sql(
                    f"SELECT rowid AS {SEQUENCE}, {select} FROM {self.table_sql} ORDER BY rowid"
                    + (f" LIMIT {int(limit)}" if limit is not None else "")
                ).to_arrow_table()
        except duckdb.Error as exc:
            raise DataError(f"{self.describe()}: {one_line(str(exc))}") from None
        frame = pl.from_arrow(table)
        if not isinstance(frame, pl.DataFrame):
            raise DataError(f"{self.describe()}: the table read as a single column")
        return frame, frame.schema

    def check(self, request: ScanRequest) -> None:
        _, schema = self._read(request, limit=0)
        check_types(schema, self.source, request, self.describe())

    def scan(self, request: ScanRequest) -> Scan:
        frame, _ = self._read(request, limit=None)
        return normalize(frame.lazy(), self.source, request, self.describe())
