"""MySQL / MariaDB: offline scans with PyMySQL (streamed, time-range pushdown), online point
lookups through an aiomysql pool. Needs ``pip install "parity[mysql]"``.

DATETIME columns carry no zone: declare it on the source (``timezone="UTC"``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlparse

import polars as pl

from parity.connectors.frames import check_columns
from parity.connectors.sql_source import SQLSourceBase
from parity.errors import ConfigError, DataError, MissingExtraError
from parity.ports.secret import Secret
from parity.ports.source import ScanRequest


def _params(secret: Secret) -> dict[str, Any]:
    url = urlparse(secret.reveal())
    if url.scheme not in ("mysql", "mariadb") or not url.path.strip("/"):
        raise ConfigError(f"{secret.reference}: expected mysql://user:password@host:port/database")
    return {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 3306,
        "user": unquote(url.username or "root"),
        "password": unquote(url.password or ""),
        "db": url.path.strip("/"),
    }


class MySQLReader(SQLSourceBase):
    def quote(self, identifier: str) -> str:
        return "`" + identifier.replace("`", "``") + "`"

    def scan(self, request: ScanRequest) -> pl.DataFrame:
        try:
            import pymysql
            import pymysql.cursors
        except ImportError:
            raise MissingExtraError("pymysql", "mysql") from None
        params = _params(self.secret)
        params["database"] = params.pop("db")
        try:
            con = pymysql.connect(**params, cursorclass=pymysql.cursors.SSCursor)
            try:
                with con.cursor() as cur:
                    cur.execute(f"SELECT * FROM {self.table_sql()} LIMIT 0")
                    check_columns([d[0] for d in cur.description], self.source, request, self.describe())
                with con.cursor() as cur:
                    sql, args = self.scan_sql(request, ["%s", "%s"])
                    cur.execute(sql, args)
                    names = [d[0] for d in cur.description]
                    rows = cur.fetchall()
            finally:
                con.close()
        except (MissingExtraError, DataError):
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the message is kept, secrets removed
            raise self._fail(exc) from None
        return self.frame_from_rows(names, rows, request)

    async def _get_pool(self):  # type: ignore[no-untyped-def]
        if self._pool is None:
            try:
                import aiomysql
            except ImportError:
                raise MissingExtraError("aiomysql", "mysql") from None
            self._pool = await aiomysql.create_pool(minsize=1, maxsize=self.pool_size, autocommit=True,
                                                    **_params(self.secret))
        return self._pool

    async def _query(self, sql: str, params: list[object]) -> tuple[list[str], list[tuple[object, ...]]]:
        pool = await self._get_pool()
        async with pool.acquire() as con, con.cursor() as cur:
            await cur.execute(sql, params)
            rows = await cur.fetchall()
            return [d[0] for d in cur.description], list(rows)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None
