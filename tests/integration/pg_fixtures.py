"""A PostgreSQL table of user rows for integration tests, dropped afterwards."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator, Sequence

import pytest

from tests.support_services import POSTGRES_URL, require_service

COLUMNS = "id bigserial, user_id bigint, updated_at timestamptz, ingested_at timestamptz, country text, score double precision"


class PgTable:
    def __init__(self, name: str) -> None:
        self.name = name

    def insert(self, rows: Sequence[tuple[int, dt.datetime, dt.datetime | None, str | None, float | None]]) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as con, con.cursor() as cur:
            cur.executemany(
                f'INSERT INTO "{self.name}" (user_id, updated_at, ingested_at, country, score) VALUES (%s, %s, %s, %s, %s)',
                list(rows),
            )


@pytest.fixture
def pg_table() -> Iterator[PgTable]:
    import psycopg

    require_service("postgresql", "127.0.0.1", 5432)
    name = f"parity_it_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f'CREATE TABLE "{name}" ({COLUMNS})')
    os.environ["PARITY_IT_PG"] = POSTGRES_URL
    yield PgTable(name)
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as con:
            con.execute(f'DROP TABLE IF EXISTS "{name}"')
    except psycopg.OperationalError:
        pass  # the fault tests restart the server; the table is harmless leftovers then
