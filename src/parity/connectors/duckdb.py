"""A table in a DuckDB database file, opened read-only; ingestion order is DuckDB's rowid."""

from __future__ import annotations

import os

import polars as pl

from parity.connectors.frames import check_columns, normalize
from parity.define.sources import DuckDBSource
from parity.errors import ConfigError
from parity.ports.source import ScanRequest
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

    def describe(self) -> str:
        return f"duckdb source {self.source.name!r} ({self.source.database}, table {self.source.table})"

    def scan(self, request: ScanRequest) -> pl.DataFrame:
        import duckdb

        if not os.path.exists(self.path):
            raise ConfigError(f"{self.describe()}: database file {self.path} does not exist")
        with duckdb.connect(self.path, read_only=True, config=DUCKDB_CONFIG) as con:
            try:
                columns = [r[0] for r in con.execute(f"DESCRIBE {_quote(self.source.table)}").fetchall()]
            except duckdb.CatalogException:
                raise ConfigError(f"{self.describe()}: no table {self.source.table!r}") from None
            check_columns(columns, self.source, request, self.describe())
            wanted = {self.source.event_time, *(c for c, _ in request.columns.values())}
            if self.source.created_time:
                wanted.add(self.source.created_time)
            select = ", ".join(_quote(c) for c in sorted(wanted))
            table = con.sql(
                f"SELECT rowid AS {SEQUENCE}, {select} FROM {_quote(self.source.table)} ORDER BY rowid"
            ).to_arrow_table()
        return normalize(pl.from_arrow(table).lazy(), self.source, request)  # type: ignore[union-attr]
