"""A MariaDB table of user rows for integration tests, dropped afterwards."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator, Sequence

import pytest

from tests.support_services import MYSQL_URL, require_service


def _connect():  # type: ignore[no-untyped-def]
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database="test", autocommit=True)


class MySQLTable:
    def __init__(self, name: str) -> None:
        self.name = name

    def insert(self, rows: Sequence[tuple[int, dt.datetime, dt.datetime | None, str | None, float | None]]) -> None:
        con = _connect()
        with con.cursor() as cur:
            cur.executemany(
                f"INSERT INTO `{self.name}` (user_id, updated_at, ingested_at, country, score) VALUES (%s, %s, %s, %s, %s)",
                [(u, e.replace(tzinfo=None), c.replace(tzinfo=None) if c else None, k, s) for u, e, c, k, s in rows],
            )
        con.close()


@pytest.fixture
def mysql_table() -> Iterator[MySQLTable]:
    require_service("mariadb", "127.0.0.1", 3306)
    name = f"parity_it_{uuid.uuid4().hex[:12]}"
    con = _connect()
    with con.cursor() as cur:
        cur.execute(f"CREATE TABLE `{name}` (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id BIGINT, "
                    "updated_at DATETIME(6), ingested_at DATETIME(6), country TEXT, score DOUBLE)")
    con.close()
    os.environ["PARITY_IT_MYSQL"] = MYSQL_URL
    yield MySQLTable(name)
    con = _connect()
    with con.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS `{name}`")
    con.close()
