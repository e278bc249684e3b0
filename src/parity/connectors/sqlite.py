"""A table in a SQLite database file, opened read-only; ingestion order is SQLite's rowid.

SQLite stores values, not column types: each value's own type decides its wire type (integers,
floats, text; booleans are 0/1 integers, timestamps ISO-8601 text or Unix seconds).
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

import polars as pl

from parity.connectors.frames import check_columns, check_types, normalize
from parity.define.sources import SQLiteSource
from parity.errors import ConfigError, DataError, one_line
from parity.ports.source import Scan, ScanRequest
from parity.semantics.ordering import SEQUENCE

_CHECK_ROWS = 1000  # values whose types ``check`` looks at


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def read_only_uri(path: str) -> str:
    """A ``file:`` URI opening ``path`` read-only; every character of the path is escaped, so a ``%``,
    ``#`` or ``?`` in a folder name cannot cut the URI short (and create an empty file instead)."""
    return f"file:{quote(os.path.abspath(path), safe='/')}?mode=ro"


class SQLiteReader:
    def __init__(self, source: SQLiteSource, base_dir: str) -> None:
        self.source = source
        self.path = source.database if os.path.isabs(source.database) else os.path.join(base_dir, source.database)

    def describe(self) -> str:
        return f"sqlite source {self.source.name!r} ({self.source.database}, table {self.source.table})"

    def _read(self, request: ScanRequest, *, limit: int | None) -> pl.DataFrame:
        if not os.path.isfile(self.path):
            raise ConfigError(f"{self.describe()}: database file {self.path} does not exist")
        try:
            con = sqlite3.connect(read_only_uri(self.path), uri=True)
        except sqlite3.Error as exc:
            raise DataError(f"{self.describe()}: cannot open {self.path}: {exc}") from None
        try:
            try:
                columns = [r[1] for r in con.execute(f"PRAGMA table_info({_quote(self.source.table)})")]
            except sqlite3.DatabaseError as exc:
                raise DataError(f"{self.describe()}: {self.path} is not a readable SQLite database ({exc})") from None
            if not columns:
                raise ConfigError(f"{self.describe()}: no table {self.source.table!r}")
            check_columns(columns, self.source, request, self.describe())
            wanted = sorted({self.source.event_time, *(c for c, _ in request.columns.values())}
                            | ({self.source.created_time} if self.source.created_time else set()))
            sql = f"SELECT rowid, {', '.join(_quote(c) for c in wanted)} FROM {_quote(self.source.table)} ORDER BY rowid"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            try:
                rows = con.execute(sql).fetchall()
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc).lower():
                    raise DataError(f"{self.describe()}: {one_line(str(exc))}") from None
                raise self._bad_text(con, wanted) from None
        finally:
            con.close()
        try:
            return pl.DataFrame(rows, schema=[SEQUENCE, *wanted], orient="row", infer_schema_length=None)
        except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
            raise DataError(f"{self.describe()}: a column holds values of mixed types ({one_line(str(exc))}); "
                            f"SQLite keeps each value's own type, so store one type per column") from None

    def _bad_text(self, con: sqlite3.Connection, wanted: list[str]) -> DataError:
        """Find the first value that is not valid UTF-8, for a message that names it."""
        con.text_factory = bytes
        sql = f"SELECT rowid, {', '.join(_quote(c) for c in wanted)} FROM {_quote(self.source.table)} ORDER BY rowid"
        for row in con.execute(sql):
            for column, value in zip(wanted, row[1:]):
                if isinstance(value, bytes):
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        return DataError(f"{self.describe()}, column {column!r}, rowid {row[0]}: its TEXT is not valid "
                                         f"UTF-8 ({value[:20]!r}); fix the data or store it as a BLOB")
        return DataError(f"{self.describe()}: a TEXT value is not valid UTF-8")

    def check(self, request: ScanRequest) -> None:
        frame = self._read(request, limit=_CHECK_ROWS)
        check_types(frame.schema, self.source, request, self.describe())

    def scan(self, request: ScanRequest) -> Scan:
        return normalize(self._read(request, limit=None).lazy(), self.source, request, self.describe())
