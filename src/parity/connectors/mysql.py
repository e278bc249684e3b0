"""MySQL / MariaDB: offline scans with PyMySQL (streamed, visibility pushed down), online point
lookups through an aiomysql pool. Needs ``pip install "parity[mysql]"``.

The type table (``read_as``): integer types and ``year``, ``float`` (widened to a double in SQL,
exactly, on both paths) and ``double``, ``decimal`` (a double for Float64 features, its exact
digits for Int64 — 1.5 is an error, not 1), ``bit`` (as an unsigned integer: ``BIT(1)`` reads as a
Bool only as 0 or 1), text types, ``enum``/``set``/``json`` (as text), ``date``, ``datetime``
(naive: needs the source's ``timezone``) and ``timestamp`` (sessions run in UTC, so these are UTC).
Event and created times may be ``datetime``, ``timestamp``, ``date`` or Unix seconds.

String keys compare by their bytes, not under the column's collation (which would merge 'a' and
'A', 'b' and 'b ', 'é' and 'e'). Without a ``sequence`` column, full ties are broken by the primary key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from parity.connectors import db_url
from parity.connectors.sql_source import PERCENT, Column, SQLSourceBase, Style, _Plan, rows_frame
from parity.define.dtypes import DType
from parity.errors import ConfigError, DataError, MissingExtraError
from parity.semantics import reading

_EXAMPLE = "mysql://user:password@host:3306/database"
_INTS = ("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year")
_TEXTS = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json")
# (YEAR is an integer, but not Unix seconds: it is no time column.)
_TIMES = {**dict.fromkeys((t for t in _INTS if t != "year"), reading.INT), "date": reading.DATE,
          "datetime": reading.NAIVE, "timestamp": reading.UTC_NAIVE}
_OPTIONS = ("unix_socket", "charset")
_BATCH = 100_000  # rows per frame while streaming a scan
# TIMESTAMP columns are read and compared in the session zone: UTC, so they are UTC instants.
_SESSION = "SET time_zone = '+00:00'"


class MySQLReader(SQLSourceBase):
    scan_style = PERCENT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = db_url.parse(self.secret, schemes=("mysql", "mariadb"), example=_EXAMPLE)
        unknown = [k for k, _ in self.url.options if k not in _OPTIONS]
        if unknown:
            raise ConfigError(f"{self.secret.reference}: unknown URL option(s) {unknown}; known: {list(_OPTIONS)}")
        charset = dict(self.url.options).get("charset")
        if charset is not None:
            try:
                from pymysql.charset import charset_by_name

                known = charset_by_name(charset) is not None
            except (ImportError, KeyError):
                known = False
            if not known:
                raise ConfigError(f"{self.secret.reference}: charset {charset!r} is not a MySQL character set "
                                  f"(e.g. utf8mb4)")

    def _params(self) -> dict[str, Any]:
        url = self.url
        params: dict[str, Any] = {
            "host": url.host or "127.0.0.1", "port": url.port or 3306, "user": url.user or "root",
            "password": url.password or "", "db": url.database, "init_command": _SESSION, "connect_timeout": 5,
            "charset": "utf8mb4",
        }
        params.update(dict(url.options))
        return params

    def quote(self, identifier: str) -> str:
        return "`" + identifier.replace("`", "``") + "`"

    def read_as(self, column: Column, dtype: DType) -> tuple[str, reading.Wire | None]:
        t = column.type
        if t in _INTS:
            return "{c}", reading.INT
        if t == "float":
            return "CAST({c} AS DOUBLE)", reading.FLOAT
        if t in ("double", "real"):
            return "{c}", reading.FLOAT
        if t in ("decimal", "numeric"):
            if dtype.name == "Float64":
                return "CAST({c} AS DOUBLE)", reading.FLOAT
            return "CAST({c} AS CHAR)", reading.DECIMAL
        if t == "bit":
            return "CAST({c} AS UNSIGNED)", reading.INT
        if t in _TEXTS:
            return "{c}", reading.TEXT
        return "{c}", _TIMES.get(t) if t in ("date", "datetime", "timestamp") else None

    def time_wire(self, column: Column) -> reading.Wire | None:
        return _TIMES.get(column.type)

    def key_match(self, expr: str, column: Column, dtype: DType, placeholder: str) -> tuple[str, str]:
        if dtype.name == "String":
            # Bytes, not the collation: CONVERT first so every column charset compares as UTF-8 bytes.
            # (Equal bytes are equal under any collation, so the plain IN first narrows by index.)
            return f"CAST(CONVERT({expr} USING utf8mb4) AS BINARY)", f"CAST({placeholder} AS BINARY)"
        return expr, placeholder

    def ingestion_order(self, columns: Mapping[str, Column], style: Style) -> tuple[tuple[str, ...], bool]:
        primary = sorted((c for c in columns.values() if c.key_position), key=lambda c: c.key_position)
        if not primary:
            raise DataError(
                f"{self.describe()}: has no primary key to order rows that tie on event and created time; declare "
                f"sequence='<auto-increment column>' on the source")
        return tuple(self.ident(c.name, style) for c in primary), len(primary) == 1 and primary[0].type in _INTS

    def _columns_sql(self) -> tuple[str, list[object]]:
        schema, _, table = self.source.table.rpartition(".")
        sql = (
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, COALESCE(k.ORDINAL_POSITION, 0) "
            "FROM information_schema.COLUMNS c LEFT JOIN information_schema.KEY_COLUMN_USAGE k "
            "ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME "
            "AND k.CONSTRAINT_NAME = 'PRIMARY' "
            "WHERE c.TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND c.TABLE_NAME = %s ORDER BY c.ORDINAL_POSITION"
        )
        return sql, [schema or None, table]

    @staticmethod
    def _column(row: tuple[object, ...]) -> Column:
        return Column(str(row[0]), str(row[1]).lower(), str(row[2]).lower(), int(row[3]))  # type: ignore[call-overload]

    def _connect(self) -> Any:
        try:
            import pymysql
        except ImportError:
            raise MissingExtraError("pymysql", "mysql") from None
        params = self._params()
        params["database"] = params.pop("db")
        return pymysql.connect(**params)

    def load_columns(self) -> dict[str, Column]:
        sql, params = self._columns_sql()
        try:
            con = self._connect()
            try:
                with con.cursor() as cur:
                    cur.execute(sql, params)
                    rows = cur.fetchall()
            finally:
                con.close()
        except MissingExtraError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the message is kept, secrets removed
            raise self._fail(exc) from None
        return {str(r[0]): self._column(r) for r in rows}

    async def aload_columns(self) -> dict[str, Column]:
        sql, params = self._columns_sql()
        _, rows = await self._query(sql, params)
        return {str(r[0]): self._column(r) for r in rows}

    def fetch_scan(self, sql: str, params: list[object], plan: _Plan) -> pl.DataFrame:
        try:
            import pymysql.cursors
        except ImportError:
            raise MissingExtraError("pymysql", "mysql") from None
        wires = {sel.alias: sel.wire for sel in plan.selected()}
        frames = []
        try:
            con = self._connect()
            try:
                with con.cursor(pymysql.cursors.SSCursor) as cur:  # streamed: rows become frames batch by batch
                    cur.execute(sql, params)
                    names = [d[0] for d in cur.description]
                    while rows := cur.fetchmany(_BATCH):
                        frames.append(rows_frame(names, rows, wires, self.describe()))
            finally:
                con.close()
        except (MissingExtraError, DataError):
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the message is kept, secrets removed
            raise self._fail(exc) from None
        return pl.concat(frames, how="vertical_relaxed") if frames else rows_frame(names, [], wires, self.describe())

    async def _open_pool(self) -> Any:
        try:
            import aiomysql
        except ImportError:
            raise MissingExtraError("aiomysql", "mysql") from None
        return await aiomysql.create_pool(minsize=1, maxsize=self.pool_size, autocommit=True, **self._params())

    async def _query(self, sql: str, params: list[object]) -> tuple[list[str], list[tuple[object, ...]]]:
        pool = await self.pool()
        async with pool.acquire() as con, con.cursor() as cur:
            await cur.execute(sql, params)
            rows = await cur.fetchall()
            return [d[0] for d in cur.description], list(rows)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None
