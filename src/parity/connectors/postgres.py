"""PostgreSQL: offline scans through ADBC (Arrow-native, time-range pushdown), online point
lookups through a psycopg 3 async connection pool. Needs ``pip install "parity[postgres]"``."""

from __future__ import annotations

import polars as pl

from parity.connectors.frames import check_columns, normalize
from parity.connectors.sql_source import SQLSourceBase
from parity.errors import DataError, MissingExtraError
from parity.ports.source import ScanRequest
from parity.semantics.ordering import SEQUENCE


def _adbc():  # type: ignore[no-untyped-def]
    try:
        from adbc_driver_postgresql import dbapi
    except ImportError:
        raise MissingExtraError("adbc-driver-postgresql", "postgres") from None
    return dbapi


class PostgresReader(SQLSourceBase):
    physical_order = "ctid"  # without a declared sequence, ties fall back to physical row order

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def _columns(self, cur) -> list[str]:  # type: ignore[no-untyped-def]
        schema, _, table = self.source.table.rpartition(".")
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND table_schema = $2 "
            "ORDER BY ordinal_position",
            (table, schema or "public"),
        )
        return [r[0] for r in cur.fetchall()]

    def scan(self, request: ScanRequest) -> pl.DataFrame:
        dbapi = _adbc()
        try:
            with dbapi.connect(self.secret.reveal()) as con, con.cursor() as cur:
                names = self._columns(cur)
                if not names:
                    raise DataError(f"{self.describe()}: no such table")
                check_columns(names, self.source, request, self.describe())
                sql, params = self.scan_sql(request, [f"${i}" for i in range(1, 3)])
                cur.execute(sql, params) if params else cur.execute(sql)
                table = cur.fetch_arrow_table()
        except (DataError, MissingExtraError):
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the message is kept, secrets removed
            raise self._fail(exc) from None
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        if self.source.sequence is None:
            frame = frame.drop(SEQUENCE).with_row_index(SEQUENCE)  # rows came in ctid order
        return normalize(frame.lazy(), self.source, request)

    async def _get_pool(self):  # type: ignore[no-untyped-def]
        if self._pool is None:
            try:
                from psycopg_pool import AsyncConnectionPool
            except ImportError:
                raise MissingExtraError("psycopg-pool", "postgres") from None
            pool = AsyncConnectionPool(self.secret.reveal(), min_size=1, max_size=self.pool_size, open=False,
                                       kwargs={"autocommit": True}, reconnect_timeout=5)
            await pool.open(wait=False)
            self._pool = pool
        return self._pool

    async def _query(self, sql: str, params: list[object]) -> tuple[list[str], list[tuple[object, ...]]]:
        pool = await self._get_pool()
        async with pool.connection() as con, con.cursor() as cur:
            await cur.execute(sql, params)
            rows = await cur.fetchall()
            return [d.name for d in cur.description], rows

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
