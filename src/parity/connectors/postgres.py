"""PostgreSQL: offline scans through ADBC (Arrow-native, visibility pushed down), online point
lookups through a psycopg 3 async connection pool. Needs ``pip install "parity[postgres]"``.

The type table (``read_as``): integers, ``real`` / ``double precision`` (a ``real`` is widened to a
double in SQL, exactly, on both paths), ``numeric`` (as a double for Float64 features; as its
exact digits for Int64, so 1.5 is an error, not 1), ``boolean``, text types and ``uuid`` / enums
(as text), ``date``, ``timestamp`` (naive: needs the source's ``timezone``), ``timestamptz``, and
one-dimensional arrays of these. Event and created times may be ``timestamptz``, ``timestamp``,
``date`` or an integer column of Unix seconds.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Mapping
from typing import Any

import polars as pl

from parity.connectors import db_url, driver_logs
from parity.connectors.sql_source import NUMBERED, Column, Selected, SQLSourceBase, Style, _Plan
from parity.define.dtypes import DType
from parity.errors import DataError, MissingExtraError
from parity.semantics import reading

_EXAMPLE = "postgresql://user:password@host:5432/database"
_pool_ids = itertools.count(1)

# udt name -> (SELECT template, wire) for features of any dtype; numeric depends on the dtype.
_SCALARS: dict[str, tuple[str, reading.Wire]] = {
    "int2": ("{c}", reading.INT), "int4": ("{c}", reading.INT), "int8": ("{c}", reading.INT),
    "float4": ("CAST({c} AS double precision)", reading.FLOAT), "float8": ("{c}", reading.FLOAT),
    "bool": ("{c}", reading.BOOL),
    "text": ("{c}", reading.TEXT), "varchar": ("{c}", reading.TEXT), "bpchar": ("{c}", reading.TEXT),
    "name": ("{c}", reading.TEXT), "citext": ("CAST({c} AS text)", reading.TEXT), "uuid": ("CAST({c} AS text)", reading.TEXT),
    "date": ("{c}", reading.DATE), "timestamp": ("{c}", reading.NAIVE), "timestamptz": ("{c}", reading.AWARE),
}
_INT_LIMITS = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
_TIMES = {"int2": reading.INT, "int4": reading.INT, "int8": reading.INT, "date": reading.DATE,
          "timestamp": reading.NAIVE, "timestamptz": reading.AWARE}


def _adbc() -> Any:
    try:
        from adbc_driver_postgresql import dbapi
    except ImportError:
        raise MissingExtraError("adbc-driver-postgresql", "postgres") from None
    return dbapi


class PostgresReader(SQLSourceBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = db_url.parse(self.secret, schemes=("postgresql", "postgres"), example=_EXAMPLE)
        self.pool_name = f"parity-{self.source.name}-{next(_pool_ids)}"
        self._indexes: list[tuple[str, ...]] = []  # each index's columns, in order
        self._relkind = "r"  # pg_class.relkind: r table, p partitioned, v view, m materialized view, f foreign
        driver_logs.watch(self.pool_name, *(p for p in (self.url.password,) if p))

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def key_value_sql(self, column: Column, selected: Selected, placeholder: str) -> str:
        # VALUES has no column types of its own: type each key like its column, so the comparison
        # uses the index — but a column read widened to a double (real, numeric) compares as one,
        # or a double key would be rounded to the column's type first and match a different value.
        if selected.wire.kind == "float" and column.detail != "float8":
            return f"CAST({placeholder} AS double precision)"
        type_name = self.quote(column.detail) if column.type == "user-defined" else column.type
        return f"CAST({placeholder} AS {type_name})"

    def key_problem(self, column: Column, dtype: DType, wire: reading.Wire) -> str | None:
        if column.detail == "bpchar":
            return "a char(n) column pads its values with spaces, so its keys cannot compare exactly; make it varchar or text"
        return super().key_problem(column, dtype, wire)

    def key_fits(self, column: Column, value: object) -> bool:
        # A key the column type cannot hold would make the whole statement fail; it is just not there.
        limit = _INT_LIMITS.get(column.detail)
        if limit is not None and isinstance(value, int):
            return -limit <= value < limit
        if column.detail == "uuid":
            try:
                uuid.UUID(str(value))
            except ValueError:
                return False
        return True

    def key_match(self, expr: str, column: Column, dtype: DType, placeholder: str) -> tuple[str, str]:
        if dtype.name == "String":
            # By code points, not under the column's collation (a nondeterministic ICU collation or
            # citext would merge 'a' and 'A'); the plain comparison still narrows by index first.
            return f'CAST({expr} AS text) COLLATE "C"', f'CAST({placeholder} AS text) COLLATE "C"'
        return expr, placeholder

    def ingestion_order(self, columns: Mapping[str, Column], style: Style) -> tuple[tuple[str, ...], bool]:
        # Without a declared sequence, ties fall back to physical row order; a partitioned table
        # repeats ctids across partitions, so the partition comes first; a view has no rows of its own.
        if self._relkind in ("v", "f"):
            raise DataError(f"{self.describe()}: is a {'view' if self._relkind == 'v' else 'foreign table'}, which "
                            f"has no physical row order to break ties; declare sequence='<unique increasing column>'")
        if self._relkind == "p":
            return ("tableoid", "ctid"), False
        # ctid (block, line) as one integer with the same order, so the scan need not sort
        return ("((ctid::text::point)[0]::bigint * 65536 + (ctid::text::point)[1]::bigint)",), True

    def read_as(self, column: Column, dtype: DType) -> tuple[str, reading.Wire | None]:
        udt = column.detail
        if column.type == "array" and udt.startswith("_"):
            template, inner = self._scalar(udt[1:], dtype.inner or dtype)
            # the same cast, element by element: CAST(c AS double precision) -> CAST(c AS double precision[])
            return re.sub(r" AS ([a-z ]+)\)$", r" AS \1[])", template), None if inner is None else reading.Wire(
                "list", inner)
        if column.type == "user-defined" and udt not in _SCALARS:  # an enum, most often
            return "CAST({c} AS text)", reading.TEXT
        return self._scalar(udt, dtype)

    @staticmethod
    def _scalar(udt: str, dtype: DType) -> tuple[str, reading.Wire | None]:
        if udt == "numeric":
            if dtype.name == "Float64":
                return "CAST({c} AS double precision)", reading.FLOAT
            return "CAST({c} AS text)", reading.DECIMAL
        return _SCALARS.get(udt, ("{c}", None))

    def time_wire(self, column: Column) -> reading.Wire | None:
        return _TIMES.get(column.detail)

    def use_lateral(self, key_columns: list[str]) -> bool:
        # Per-key index probes are only fast with an index that starts with the key columns;
        # without one each key would scan the table, and one ranking pass is far cheaper.
        n = len(key_columns)
        return any(set(cols[:n]) == set(key_columns) for cols in self._indexes)

    _RELKIND = "SELECT relkind::text FROM pg_class WHERE oid = to_regclass({p})"
    _INDEXES = ("SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i "
                "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = to_regclass({p}) GROUP BY i.indexrelid")

    def _columns_query(self) -> tuple[str, tuple[str, str]]:
        schema, _, table = self.source.table.rpartition(".")
        sql = ("SELECT column_name, data_type, udt_name FROM information_schema.columns "
               "WHERE table_name = {p} AND table_schema = {p} ORDER BY ordinal_position")
        return sql, (table, schema or "public")

    def load_columns(self) -> dict[str, Column]:
        sql, params = self._columns_query()
        try:
            with _adbc().connect(self.url.rebuilt("postgresql")) as con, con.cursor() as cur:
                cur.execute(sql.replace("{p}", "$1", 1).replace("{p}", "$2", 1), params)
                rows = cur.fetchall()
                cur.execute(self._INDEXES.replace("{p}", "$1"), (self.table_sql(NUMBERED),))
                self._indexes = [tuple(r[0]) for r in cur.fetchall()]
                cur.execute(self._RELKIND.replace("{p}", "$1"), (self.table_sql(NUMBERED),))
                self._relkind = next((str(r[0]) for r in cur.fetchall()), "r")
        except MissingExtraError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the message is kept, secrets removed
            raise self._fail(exc) from None
        return {r[0]: Column(r[0], str(r[1]).lower(), str(r[2])) for r in rows}

    async def aload_columns(self) -> dict[str, Column]:
        sql, params = self._columns_query()
        _, rows = await self._query(sql.replace("{p}", "%s"), list(params))
        _, indexes = await self._query(self._INDEXES.replace("{p}", "%s"), [self.table_sql(NUMBERED)])
        self._indexes = [tuple(str(c) for c in r[0]) for r in indexes]  # type: ignore[attr-defined]
        _, kinds = await self._query(self._RELKIND.replace("{p}", "%s"), [self.table_sql(NUMBERED)])
        self._relkind = next((str(r[0]) for r in kinds), "r")
        return {str(r[0]): Column(str(r[0]), str(r[1]).lower(), str(r[2])) for r in rows}

    def fetch_scan(self, sql: str, params: list[object], plan: _Plan) -> pl.DataFrame:
        try:
            with _adbc().connect(self.url.rebuilt("postgresql")) as con, con.cursor() as cur:
                cur.execute(sql, params) if params else cur.execute(sql)
                table = cur.fetch_arrow_table()
        except (DataError, MissingExtraError):
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the message is kept, secrets removed
            raise self._fail(exc) from None
        frame = pl.from_arrow(table)
        if not isinstance(frame, pl.DataFrame):
            raise DataError(f"{self.describe()}: the scan returned no table")
        return frame

    async def _open_pool(self) -> Any:
        try:
            from psycopg.conninfo import make_conninfo
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            raise MissingExtraError("psycopg-pool", "postgres") from None
        url = self.url
        options = dict(url.options)
        conninfo = make_conninfo("", host=options.pop("host", url.host), port=url.port, user=url.user,
                                 password=url.password, dbname=url.database,
                                 connect_timeout=options.pop("connect_timeout", "5"), **options)
        pool = AsyncConnectionPool(conninfo, min_size=1, max_size=self.pool_size, open=False, name=self.pool_name,
                                   kwargs={"autocommit": True}, reconnect_timeout=5)
        await pool.open(wait=False)
        return pool

    def recent_problem(self) -> str | None:
        return driver_logs.last_warning(self.pool_name)

    async def _query(self, sql: str, params: list[object]) -> tuple[list[str], list[tuple[object, ...]]]:
        pool = await self.pool()
        async with pool.connection() as con, con.cursor() as cur:
            await cur.execute(sql, params)
            rows = await cur.fetchall()
            return [d.name for d in cur.description], rows

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
