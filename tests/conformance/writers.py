"""Store a case's logical rows natively in each system and return the parity source over them."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import sqlite3
import uuid

import duckdb
import polars as pl

import parity as pt
from tests.conformance.source_cases import Case
from tests.support_services import MYSQL_URL, POSTGRES_URL, require_service

KINDS = ["parquet", "parquet-folder", "delta", "duckdb", "sqlite", "postgres", "postgres-indexed", "mysql"]
# They answer point lookups at request time. "postgres-indexed" has an index on (key, event time),
# so its lookups take the per-key LATERAL plan; plain "postgres" ranks every row of the keys.
DATABASES = ("postgres", "postgres-indexed", "mysql")

# logical type -> native column type per system
NATIVE = {
    "int": {"polars": pl.Int64, "duckdb": "BIGINT", "sqlite": "INTEGER", "postgres": "bigint", "mysql": "BIGINT"},
    "string": {"polars": pl.String, "duckdb": "VARCHAR", "sqlite": "TEXT", "postgres": "text",
               # the server's default: case- and accent-insensitive, trailing spaces ignored
               "mysql": "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"},
    "float32": {"polars": pl.Float32, "duckdb": "REAL", "postgres": "real", "mysql": "FLOAT"},
    "decimal": {"polars": pl.Decimal(10, 2), "duckdb": "DECIMAL(10,2)", "postgres": "numeric",
                "mysql": "DECIMAL(10,2)"},
    "bool": {"polars": pl.Boolean, "duckdb": "BOOLEAN", "sqlite": "INTEGER", "postgres": "boolean", "mysql": "BIT(1)"},
    "ts_aware": {"polars": pl.Datetime("us", "UTC"), "duckdb": "TIMESTAMPTZ", "sqlite": "TEXT",
                 "postgres": "timestamptz", "mysql": "TIMESTAMP(6) NULL"},
    "ts_naive": {"polars": pl.Datetime("us"), "duckdb": "TIMESTAMP", "sqlite": "TEXT", "postgres": "timestamp",
                 "mysql": "DATETIME(6)"},
    "date": {"polars": pl.Date, "duckdb": "DATE", "sqlite": "TEXT", "postgres": "date", "mysql": "DATE"},
    "unix": {"polars": pl.Int64, "duckdb": "BIGINT", "sqlite": "INTEGER", "postgres": "bigint", "mysql": "BIGINT"},
}


def _sqlite_value(kind: str, value: object) -> object:
    if value is None:
        return None
    if kind in ("ts_aware", "ts_naive", "date"):
        return value.isoformat()  # type: ignore[attr-defined]
    if kind == "bool":
        return int(value)  # type: ignore[call-overload]
    return value


def _db_value(kind: str, value: object, system: str) -> object:
    if value is None:
        return None
    if kind == "decimal":
        return decimal.Decimal(value)  # type: ignore[arg-type]
    if system == "mysql" and kind == "ts_aware":
        return value.astimezone(dt.UTC).replace(tzinfo=None)  # type: ignore[attr-defined]  # sessions run in UTC
    return value


def _frame(case: Case) -> pl.DataFrame:
    columns = list(case.columns)
    data = {c: [row[i] for row in case.rows] for i, c in enumerate(columns)}
    schema = {c: NATIVE[kind]["polars"] for c, kind in case.columns.items()}
    return pl.DataFrame({c: pl.Series(c, data[c], dtype=schema[c]) for c in columns})


def _source_args(case: Case) -> dict[str, object]:
    return {"event_time": case.event, "created_time": case.created, "timezone": case.timezone}


def write(kind: str, tmp: str, case: Case) -> pt.Source:
    """The case's rows stored in system ``kind``; the source over them (no ``sequence`` declared)."""
    args = _source_args(case)
    if kind == "parquet":
        _frame(case).write_parquet(os.path.join(tmp, "rows.parquet"))
        return pt.ParquetSource("rows", path="rows.parquet", **args)  # type: ignore[arg-type]
    if kind == "parquet-folder":
        os.makedirs(os.path.join(tmp, "parts"))
        frame = _frame(case)
        step = max(1, frame.height // 3 + 1)
        for i, start in enumerate(range(0, frame.height, step)):
            frame.slice(start, step).write_parquet(os.path.join(tmp, "parts", f"part-{i:02d}.parquet"))
        return pt.ParquetSource("rows", path="parts", **args)  # type: ignore[arg-type]
    if kind == "delta":
        return _delta(tmp, case)
    if kind == "duckdb":
        with duckdb.connect(os.path.join(tmp, "db.duckdb")) as con:
            cols = ", ".join(f'"{c}" {NATIVE[k]["duckdb"]}' for c, k in case.columns.items())
            con.execute(f'CREATE TABLE "{case.table}" ({cols})')
            con.register("frame", _frame(case).to_arrow())
            con.execute(f'INSERT INTO "{case.table}" SELECT * FROM frame')
        return pt.DuckDBSource("rows", database="db.duckdb", table=case.table, **args)  # type: ignore[arg-type]
    if kind == "sqlite":
        con = sqlite3.connect(os.path.join(tmp, "db.sqlite"))
        cols = ", ".join(f'"{c}" {NATIVE[k]["sqlite"]}' for c, k in case.columns.items())
        con.execute(f'CREATE TABLE "{case.table}" ({cols})')
        kinds = list(case.columns.values())
        con.executemany(f'INSERT INTO "{case.table}" VALUES ({", ".join("?" * len(kinds))})',
                        [tuple(_sqlite_value(k, v) for k, v in zip(kinds, row)) for row in case.rows])
        con.commit()
        con.close()
        return pt.SQLiteSource("rows", database="db.sqlite", table=case.table, **args)  # type: ignore[arg-type]
    table = f"{case.table}_{uuid.uuid4().hex[:10]}"
    if kind in ("postgres", "postgres-indexed"):
        import psycopg

        require_service("postgresql", "127.0.0.1", 5432)
        cols = ", ".join(f'"{c}" {NATIVE[k]["postgres"]}' for c, k in case.columns.items())
        quoted = ", ".join(f'"{c}"' for c in case.columns)
        kinds = list(case.columns.values())
        with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
            con.execute(f'CREATE TABLE "{table}" (id bigserial, {cols})')  # no parameters: no % escaping
            with con.cursor() as cur, cur.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
                for row in case.rows:
                    copy.write_row([_db_value(k, v, "postgres") for k, v in zip(kinds, row)])
            if kind == "postgres-indexed":
                con.execute(f'CREATE INDEX ON "{table}" ("{case.key[0]}", "{case.event}")')
        os.environ["PARITY_CONFORMANCE_PG"] = POSTGRES_URL
        CLEANUP.append(("postgres", table))
        return pt.PostgresSource("rows", table=table, connection="env:PARITY_CONFORMANCE_PG", **args)  # type: ignore[arg-type]
    if kind == "mysql":
        require_service("mariadb", "127.0.0.1", 3306)
        con = _mysql()
        cols = ", ".join(f"`{c}` {NATIVE[k]['mysql']}" for c, k in case.columns.items())
        kinds = list(case.columns.values())
        with con.cursor() as cur:
            cur.execute(f"CREATE TABLE `{table}` (id BIGINT AUTO_INCREMENT PRIMARY KEY, {cols})".replace("%", "%%"), ())
            quoted = ", ".join(f"`{c}`" for c in case.columns).replace("%", "%%")
            sql = f"INSERT INTO `{table.replace('%', '%%')}` ({quoted}) VALUES ({', '.join(['%s'] * len(kinds))})"
            rows = [tuple(_db_value(k, v, "mysql") for k, v in zip(kinds, row)) for row in case.rows]
            for start in range(0, len(rows), 5000):
                cur.executemany(sql, rows[start:start + 5000])
        con.close()
        os.environ["PARITY_CONFORMANCE_MYSQL"] = MYSQL_URL
        CLEANUP.append(("mysql", table))
        return pt.MySQLSource("rows", table=table, connection="env:PARITY_CONFORMANCE_MYSQL", **args)  # type: ignore[arg-type]
    raise AssertionError(kind)


def _delta(tmp: str, case: Case) -> pt.Source:
    """A Delta table of the case's rows in three commits (their ingestion order), partitioned by a
    column of its own, so its files hold fewer columns than the table and ties cross files."""
    import time

    from deltalake import write_deltalake

    frame = _frame(case).with_columns((pl.int_range(pl.len()) % 2).cast(pl.Int64).alias("part"))
    step = max(1, frame.height // 3 + 1)
    for start in range(0, max(frame.height, 1), step):
        write_deltalake(os.path.join(tmp, "table"), frame.slice(start, step).to_arrow(), mode="append",
                        partition_by=["part"])
        time.sleep(0.002)  # files are ordered by the time they were added (ms), then path
    return pt.DeltaSource("rows", path="table", **_source_args(case))  # type: ignore[arg-type]


def _mysql():  # type: ignore[no-untyped-def]
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database="test", autocommit=True,
                           init_command="SET time_zone = '+00:00'")


CLEANUP: list[tuple[str, str]] = []


def drop_tables() -> None:
    while CLEANUP:
        system, table = CLEANUP.pop()
        try:
            if system == "postgres":
                import psycopg

                with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as con:
                    con.execute(f'DROP TABLE IF EXISTS "{table}"')
            else:
                con = _mysql()
                with con.cursor() as cur:
                    cur.execute(f"DROP TABLE IF EXISTS `{table}`".replace("%", "%%"), ())
                con.close()
        except Exception:  # noqa: BLE001, S110 - leftovers of a stopped server are harmless
            pass
