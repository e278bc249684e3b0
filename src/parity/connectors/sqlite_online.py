"""The embedded online store: one SQLite file, one table per feature-view version.

Keys and values are msgpack-encoded (exact for ints, floats — NaN included — strings and lists).
Monotonic writes are enforced inside SQLite by a conditional upsert (``semantics.ordering``).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import msgpack

from parity.errors import StoreError
from parity.ports.online_store import StoredRow
from parity.semantics.keys import encode as encode_key
from parity.semantics.ordering import sql_not_older

_packb = msgpack.Packer(use_bin_type=True).pack
F = TypeVar("F", bound=Callable[..., Any])
_BUSY_MS = 5000  # how long a write waits for another process's write to finish


def _store_errors(method: F) -> F:
    """SQLite errors (a corrupt file, a lock held by another process) as one-line StoreErrors."""

    @functools.wraps(method)
    def wrapper(self: SQLiteOnlineStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                hint = f"another process holds its write lock (waited {_BUSY_MS / 1000:g} s); try again when it is done"
            elif "not a database" in text or "malformed" in text:
                hint = "the file is not a SQLite database or is damaged; delete it and materialize again"
            else:
                hint = text
            raise StoreError(f"online store {self.path}: {hint}") from None

    return wrapper  # type: ignore[return-value]


class SQLiteOnlineStore:
    """Thread-safe for reads (one connection per thread); writes are transactions."""

    reads_may_block = False  # WAL mode: readers never wait for writers; a read is a local page lookup

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._local = threading.local()
        self._tables: set[str] = set()
        self._statements: dict[tuple[str, int], str] = {}
        self._init()

    @_store_errors
    def _init(self) -> None:
        if os.path.isdir(self.path):
            raise StoreError(f"online store {self.path} is a folder; point online_store.path at a file")
        con = self._con()
        con.execute("CREATE TABLE IF NOT EXISTS parity_watermarks (tbl TEXT PRIMARY KEY, micros INTEGER NOT NULL)")
        con.commit()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True, timeout=_BUSY_MS / 1000)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                if con is not None:
                    con.close()
                raise
            self._local.con = con
        return con

    @staticmethod
    def _name(table: str) -> str:
        if not table.replace("_", "").isalnum():
            raise StoreError(f"invalid online table name {table!r}")
        return f"fv_{table}"

    @_store_errors
    def ensure_table(self, table: str) -> None:
        if table in self._tables:
            return
        self._con().execute(
            f"CREATE TABLE IF NOT EXISTS {self._name(table)} "
            "(k BLOB PRIMARY KEY, ev INTEGER NOT NULL, cr INTEGER NOT NULL, payload BLOB NOT NULL) WITHOUT ROWID"
        )
        self._tables.add(table)

    @_store_errors
    def has_table(self, table: str) -> bool:
        if table in self._tables:
            return True
        row = self._con().execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (self._name(table),)
        ).fetchone()
        if row:
            self._tables.add(table)
        return row is not None

    @_store_errors
    def write(self, table: str, rows: Iterable[tuple[tuple[object, ...], StoredRow]]) -> int:
        self.ensure_table(table)
        name = self._name(table)
        sql = (
            f"INSERT INTO {name} AS held (k, ev, cr, payload) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(k) DO UPDATE SET ev=excluded.ev, cr=excluded.cr, payload=excluded.payload "
            f"WHERE {sql_not_older('excluded', 'held')}"
        )
        con = self._con()
        before = con.total_changes
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(sql, ((encode_key(k), ev, cr, _packb(list(v))) for k, (ev, cr, v) in rows))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return con.total_changes - before

    @_store_errors
    def read(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[StoredRow | None]:
        if not self.has_table(table):
            return [None] * len(keys)
        con = self._con()
        n = len(keys)
        sql = self._statements.get((table, n))
        if sql is None:
            marks = ",".join("?" * n)
            sql = f"SELECT k, ev, cr, payload FROM {self._name(table)} WHERE k IN ({marks})"
            self._statements[(table, n)] = sql
        encoded = [encode_key(k) for k in keys]
        found = {k: (ev, cr, tuple(msgpack.unpackb(p))) for k, ev, cr, p in con.execute(sql, encoded)}
        return [found.get(k) for k in encoded]

    @_store_errors
    def read_synced(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[int | None]:
        watermark = self.get_watermark(table)
        marks: dict[bytes, int] = {}
        if keys and self._has_sync(table):
            encoded = [encode_key(k) for k in keys]
            sql = f"SELECT k, synced FROM {self._name(table)}_sync WHERE k IN ({','.join('?' * len(encoded))})"
            marks = dict(self._con().execute(sql, encoded).fetchall())
        out = []
        for key in keys:
            mark = marks.get(encode_key(key))
            candidates = [m for m in (watermark, mark) if m is not None]
            out.append(max(candidates) if candidates else None)
        return out

    def _has_sync(self, table: str) -> bool:
        return self._con().execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (f"{self._name(table)}_sync",)
        ).fetchone() is not None

    @_store_errors
    def mark_synced(self, table: str, keys: Sequence[tuple[object, ...]], micros: int) -> None:
        name = f"{self._name(table)}_sync"
        con = self._con()
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} (k BLOB PRIMARY KEY, synced INTEGER NOT NULL) WITHOUT ROWID")
        con.executemany(
            f"INSERT INTO {name} (k, synced) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET synced=max(synced, excluded.synced)",
            [(encode_key(k), micros) for k in keys],
        )

    @_store_errors
    def get_watermark(self, table: str) -> int | None:
        row = self._con().execute("SELECT micros FROM parity_watermarks WHERE tbl=?", (table,)).fetchone()
        return row[0] if row else None

    @_store_errors
    def set_watermark(self, table: str, micros: int) -> None:
        self._con().execute(
            "INSERT INTO parity_watermarks (tbl, micros) VALUES (?, ?) "
            "ON CONFLICT(tbl) DO UPDATE SET micros=max(micros, excluded.micros)",
            (table, micros),
        )

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
