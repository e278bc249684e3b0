"""The embedded online store: one SQLite file, one table per feature-view version; per window
view three (its events, its keys, its window sets — see "window indexes" below).

Keys and values are msgpack-encoded (exact for ints, floats — NaN included — strings and lists).
Monotonic writes are enforced inside SQLite by a conditional upsert (``semantics.ordering``).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import msgpack

from parity.errors import StoreError
from parity.ports.online_store import NO_CREATED, SetAsk, SetMember, StoredRow, WindowEvent, empty_set_answer
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
        self._statements: dict[tuple[str, int | str], str] = {}
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
                con.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: index rebuilds stay in memory
                # Checkpoints copy every page a commit dirtied back into the database; a stream
                # dirties one page per event (keys interleave), so checkpointing every 1,000 pages
                # (the default) costs more than the inserts. 20,000 pages (80 MiB of WAL) halves the
                # cost per event at a million-event index (bench/windows.py ingest).
                con.execute("PRAGMA wal_autocheckpoint=20000")
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
            con.executemany(sql, ((encode_key(k), ev, cr, _packb(v)) for k, (ev, cr, v) in rows))
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

    # -- window indexes: one row per event, clustered by (key, row order) ----------------------
    # wfv_<table>: (k, ev, crk, seq) primary key — crk is the created time, NO_CREATED when none —
    # then cr, vis, lanes, payload (msgpack), prefix (``semantics.window_state``);
    # wfv_<table>_keys: k -> the latest visibility instant of the key's events;
    # wfv_<table>_sets: (k, slot, ev, crk, seq) -> msgpack value, the window sets (``semantics.window_sets``).

    def _window_tables(self, table: str, con: sqlite3.Connection) -> str:
        name = "w" + self._name(table)
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} (k BLOB NOT NULL, ev INTEGER NOT NULL, crk INTEGER NOT NULL, "
                    f"seq INTEGER NOT NULL, cr INTEGER, vis INTEGER NOT NULL, lanes INTEGER NOT NULL, "
                    f"payload BLOB NOT NULL, prefix BLOB, PRIMARY KEY (k, ev, crk, seq)) WITHOUT ROWID")
        con.execute(f"CREATE TABLE IF NOT EXISTS {name}_keys (k BLOB PRIMARY KEY, vis INTEGER NOT NULL) WITHOUT ROWID")
        con.execute(f"CREATE TABLE IF NOT EXISTS {name}_sets (k BLOB NOT NULL, slot INTEGER NOT NULL, ev INTEGER NOT NULL, "
                    f"crk INTEGER NOT NULL, seq INTEGER NOT NULL, value BLOB NOT NULL, "
                    f"PRIMARY KEY (k, slot, ev, crk, seq)) WITHOUT ROWID")
        return name

    @staticmethod
    def _set_rows(members: Iterable[SetMember]) -> Iterator[tuple[object, ...]]:
        for key, slot, (ev, crk, seq), value in members:
            yield (encode_key(key), slot, ev, crk, seq, _packb(value))

    @staticmethod
    def _window_rows(events: Iterable[WindowEvent]) -> Iterator[tuple[object, ...]]:
        for e in events:
            yield (encode_key(e[0]), e[1], NO_CREATED if e[2] is None else e[2], e[3], e[2], e[4], e[5],
                   _packb(e[6]), e[7])  # a tuple packs as the array a list would

    @_store_errors
    def window_replace(self, table: str, parts: Iterable[tuple[Iterable[WindowEvent], Iterable[SetMember]]]) -> int:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            name = "w" + self._name(table)
            con.execute(f"DROP TABLE IF EXISTS {name}")
            con.execute(f"DROP TABLE IF EXISTS {name}_keys")
            con.execute(f"DROP TABLE IF EXISTS {name}_sets")
            self._window_tables(table, con)
            for events, members in parts:
                con.executemany(f"INSERT OR REPLACE INTO {name} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                self._window_rows(events))
                con.executemany(f"INSERT OR REPLACE INTO {name}_sets VALUES (?, ?, ?, ?, ?, ?)", self._set_rows(members))
            con.execute(f"INSERT INTO {name}_keys SELECT k, max(vis) FROM {name} GROUP BY k")
            count = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return int(count)

    @_store_errors
    def window_write(self, table: str, events: Sequence[WindowEvent], replaced: Sequence[WindowEvent],
                     max_visible: dict[tuple[object, ...], int], added: Sequence[SetMember] = (),
                     removed: Sequence[SetMember] = ()) -> None:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            name = self._window_tables(table, con)
            if removed:
                con.executemany(f"DELETE FROM {name}_sets WHERE k = ? AND slot = ? AND ev = ? AND crk = ? AND seq = ?",
                                [(encode_key(k), slot, *pos) for k, slot, pos, _ in removed])
            if added:
                con.executemany(f"INSERT OR REPLACE INTO {name}_sets VALUES (?, ?, ?, ?, ?, ?)", self._set_rows(added))
            # A replaced row keeps its primary key, so INSERT OR REPLACE re-states it in place.
            con.executemany(f"INSERT OR REPLACE INTO {name} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            self._window_rows(events))
            con.executemany(f"INSERT INTO {name}_keys (k, vis) VALUES (?, ?) "
                            f"ON CONFLICT(k) DO UPDATE SET vis = max(vis, excluded.vis)",
                            [(encode_key(k), v) for k, v in max_visible.items()])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _has_window(self, table: str, con: sqlite3.Connection) -> bool:
        name = "w" + self._name(table)
        if name in self._tables:
            return True
        found = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None
        if found:
            self._tables.add(name)
        return found

    @staticmethod
    def _window_event(key: tuple[object, ...], row: tuple[Any, ...]) -> WindowEvent:
        ev, cr, seq, vis, lanes, payload, prefix = row
        return (key, ev, cr, seq, vis, lanes, tuple(msgpack.unpackb(payload)), prefix, None)

    @_store_errors
    def window_read(self, table: str, keys: Sequence[tuple[object, ...]], after_us: int | None,
                    until_us: int | None) -> list[list[WindowEvent]]:
        con = self._con()
        if not self._has_window(table, con):
            return [[] for _ in keys]
        name = "w" + self._name(table)
        low = -(2**63) if after_us is None else after_us
        high = 2**63 - 1 if until_us is None else until_us
        sql = (f"SELECT ev, cr, seq, vis, lanes, payload, prefix FROM {name} WHERE k = ? AND ev > ? AND ev <= ? "
               f"ORDER BY ev, crk, seq")
        return [[self._window_event(key, row) for row in con.execute(sql, (encode_key(key), low, high))]
                for key in keys]

    @_store_errors
    def window_last(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[WindowEvent | None]:
        con = self._con()
        if not self._has_window(table, con):
            return [None for _ in keys]
        sql = (f"SELECT ev, cr, seq, vis, lanes, payload, prefix FROM w{self._name(table)} WHERE k = ? "
               f"ORDER BY ev DESC, crk DESC, seq DESC LIMIT 1")
        out: list[WindowEvent | None] = []
        for key in keys:
            row = con.execute(sql, (encode_key(key),)).fetchone()
            out.append(None if row is None else self._window_event(key, row))
        return out

    @_store_errors
    def window_seek(self, table: str, keys: Sequence[tuple[object, ...]], times: Sequence[int | None],
                    asks: Sequence[SetAsk] = ()) -> list[tuple[int | None, list[bytes | None], list[object]]]:
        con = self._con()
        if not self._has_window(table, con):
            return [(None, [None] * len(times), [empty_set_answer(a[1]) for a in asks]) for _ in keys]
        name = "w" + self._name(table)
        # One statement per key: the key's latest visibility, then per time one B-tree descent to the
        # last event at or before it — whatever the window's width; then one per set ask.
        live = [t for t in times if t is not None]
        sql = self._statements.get((f"seek:{name}", len(live)))
        if sql is None:
            seek = (f"(SELECT prefix FROM {name} WHERE k = ?1 AND ev <= ? ORDER BY ev DESC, crk DESC, seq DESC "
                    f"LIMIT 1)")
            sql = f"SELECT (SELECT vis FROM {name}_keys WHERE k = ?1)" + "".join(f", {seek}" for _ in live)
            self._statements[(f"seek:{name}", len(live))] = sql
        out: list[tuple[int | None, list[bytes | None], list[object]]] = []
        # The sets are read in the seek's snapshot (one read transaction): a write landing between
        # them could hold events the seek's visibility did not cover.
        snapshot = bool(asks) and not con.in_transaction
        if snapshot:
            con.execute("BEGIN")
        try:
            for key in keys:
                k = encode_key(key)
                row = con.execute(sql, (k, *live)).fetchone()
                if row[0] is None:
                    out.append((None, [None] * len(times), [empty_set_answer(a[1]) for a in asks]))
                    continue
                found = iter(row[1:])
                blobs: list[bytes | None] = [None if t is None else next(found) for t in times]
                out.append((row[0], blobs, self._set_answers(con, name, k, asks)))
        finally:
            if snapshot:
                con.execute("COMMIT")
        return out

    @_store_errors
    def window_sets(self, table: str, keys: Sequence[tuple[object, ...]], slots: Sequence[int],
                    after_us: int | None = None) -> list[dict[int, list[tuple[tuple[int, int, int], object]]]]:
        con = self._con()
        out: list[dict[int, list[tuple[tuple[int, int, int], object]]]] = [{s: [] for s in slots} for _ in keys]
        if not slots or not self._has_window(table, con):
            return out
        name = "w" + self._name(table)
        marks = ", ".join("?" * len(slots))
        sql = (f"SELECT slot, ev, crk, seq, value FROM {name}_sets WHERE k = ? AND slot IN ({marks}) AND ev > ? "
               f"ORDER BY slot, ev, crk, seq")
        low = -(2**63) if after_us is None else after_us
        for key, held in zip(keys, out):
            for slot, ev, crk, seq, value in con.execute(sql, (encode_key(key), *slots, low)):
                held[slot].append(((ev, crk, seq), msgpack.unpackb(value)))
        return out

    def _set_sql(self, name: str, mode: str) -> str:
        sql = self._statements.get((f"set:{name}", mode))
        if sql is None:
            where = f"FROM {name}_sets WHERE k = ? AND slot = ? AND ev > ?"
            sql = {"at": f"SELECT value FROM {name}_sets WHERE k = ? AND slot = ? AND ev <= ? "
                         f"ORDER BY ev DESC, crk DESC, seq DESC LIMIT 1",
                   "count": f"SELECT count(*) {where}",
                   "first": f"SELECT value {where} ORDER BY ev, crk, seq LIMIT 1",
                   "last": f"SELECT value {where} ORDER BY ev DESC, crk DESC, seq DESC LIMIT 1",
                   "last_n": f"SELECT value {where} ORDER BY ev DESC, crk DESC, seq DESC LIMIT ?",
                   "all": f"SELECT value {where}"}[mode]
            self._statements[(f"set:{name}", mode)] = sql
        return sql

    def _set_answers(self, con: sqlite3.Connection, name: str, k: bytes, asks: Sequence[SetAsk]) -> list[object]:
        answers: list[object] = []
        for slot, mode, bound, n in asks:
            unbounded = 2**63 - 1 if mode == "at" else -(2**63)
            args: tuple[object, ...] = (k, slot, unbounded if bound is None else bound)
            rows = con.execute(self._set_sql(name, mode), (*args, n) if mode == "last_n" else args)
            if mode == "count":
                answers.append(rows.fetchone()[0])
            elif mode in ("first", "last", "at"):
                row = rows.fetchone()
                answers.append(None if row is None else msgpack.unpackb(row[0]))
            else:
                answers.append([msgpack.unpackb(r[0]) for r in rows])
        return answers

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
