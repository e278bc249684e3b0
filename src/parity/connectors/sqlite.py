"""A table in a SQLite database file; ingestion order is SQLite's rowid."""

from __future__ import annotations

import os
import sqlite3

import polars as pl

from parity.connectors.frames import check_columns, normalize
from parity.define.sources import SQLiteSource
from parity.errors import ConfigError
from parity.ports.source import ScanRequest
from parity.semantics.ordering import SEQUENCE


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class SQLiteReader:
    def __init__(self, source: SQLiteSource, base_dir: str) -> None:
        self.source = source
        self.path = source.database if os.path.isabs(source.database) else os.path.join(base_dir, source.database)

    def describe(self) -> str:
        return f"sqlite source {self.source.name!r} ({self.source.database}, table {self.source.table})"

    def scan(self, request: ScanRequest) -> pl.DataFrame:
        if not os.path.exists(self.path):
            raise ConfigError(f"{self.describe()}: database file {self.path} does not exist")
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            columns = [r[1] for r in con.execute(f"PRAGMA table_info({_quote(self.source.table)})")]
            if not columns:
                raise ConfigError(f"{self.describe()}: no table {self.source.table!r}")
            check_columns(columns, self.source, request, self.describe())
            wanted = sorted({self.source.event_time, *(c for c, _ in request.columns.values())}
                            | ({self.source.created_time} if self.source.created_time else set()))
            cursor = con.execute(
                f"SELECT rowid, {', '.join(_quote(c) for c in wanted)} FROM {_quote(self.source.table)} ORDER BY rowid"
            )
            rows = cursor.fetchall()
        finally:
            con.close()
        frame = pl.DataFrame(rows, schema=[SEQUENCE, *wanted], orient="row", infer_schema_length=None)
        return normalize(frame.lazy(), self.source, request)
