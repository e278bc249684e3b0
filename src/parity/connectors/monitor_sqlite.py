"""The monitoring store as one SQLite file (``.parity/monitor.db``): bins fixed per feature
version, baselines, and result points as a time series. WAL, so the server's monitors and a
``parity monitor`` run read while another process writes."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from parity.ports.monitor_store import Baseline, Point

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bins (feature TEXT NOT NULL, version TEXT NOT NULL, bins TEXT NOT NULL,
                                 PRIMARY KEY (feature, version));
CREATE TABLE IF NOT EXISTS baselines (id INTEGER PRIMARY KEY, feature TEXT NOT NULL, version TEXT NOT NULL,
                                      origin TEXT NOT NULL, recorded_at_us INTEGER NOT NULL, rows INTEGER NOT NULL,
                                      profile TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS baselines_by_feature ON baselines (feature, version, id);
CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY, metric TEXT NOT NULL, feature TEXT NOT NULL,
                                   version TEXT NOT NULL, window_start_us INTEGER NOT NULL,
                                   window_end_us INTEGER NOT NULL, value REAL, threshold REAL,
                                   status TEXT NOT NULL, detail TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS points_by_window ON points (metric, feature, version, window_start_us,
                                                             window_end_us);
CREATE INDEX IF NOT EXISTS points_by_time ON points (window_end_us);
CREATE INDEX IF NOT EXISTS points_by_feature ON points (feature, metric, window_end_us);
"""


class SQLiteMonitorStore:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def bins(self, feature: str, version: str) -> Mapping[str, Any] | None:
        with self._lock:  # never inside another thread's open transaction
            row = self._db.execute("SELECT bins FROM bins WHERE feature = ? AND version = ?",
                                   (feature, version)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def fix_bins(self, feature: str, version: str, bins: Mapping[str, Any]) -> Mapping[str, Any]:
        with self._lock:  # the first writer wins, in this process and (by the primary key) in any other
            self._db.execute("INSERT OR IGNORE INTO bins (feature, version, bins) VALUES (?, ?, ?)",
                             (feature, version, json.dumps(bins)))
        fixed = self.bins(feature, version)
        assert fixed is not None
        return fixed

    def add_baseline(self, baseline: Baseline) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO baselines (feature, version, origin, recorded_at_us, rows, profile) VALUES (?, ?, ?, ?, ?, ?)",
                (baseline.feature, baseline.version, baseline.origin, baseline.recorded_at_us, baseline.rows,
                 json.dumps(baseline.profile)))

    def baselines(self, feature: str, version: str | None = None) -> list[Baseline]:
        query = "SELECT feature, version, origin, recorded_at_us, rows, profile FROM baselines WHERE feature = ?"
        params: tuple[object, ...] = (feature,)
        if version is not None:
            query, params = query + " AND version = ?", (feature, version)
        with self._lock:
            found = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [Baseline(f, v, o, at, rows, json.loads(p)) for f, v, o, at, rows, p in found]

    def record(self, points: Sequence[Point]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO points (metric, feature, version, window_start_us, window_end_us, value, threshold, "
                    "status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(p.metric, p.feature, p.version, p.window_start_us, p.window_end_us, p.value, p.threshold,
                      p.status, json.dumps(dict(p.detail))) for p in points])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def points(self, *, metric: str | None = None, feature: str | None = None, since_us: int | None = None,
               until_us: int | None = None) -> list[Point]:
        where, params = ["1 = 1"], []
        for clause, value in (("metric = ?", metric), ("feature = ?", feature), ("window_end_us >= ?", since_us),
                              ("window_end_us < ?", until_us)):
            if value is not None:
                where.append(clause)
                params.append(value)
        with self._lock:
            rows = self._db.execute(
                "SELECT metric, feature, version, window_start_us, window_end_us, value, threshold, status, detail "
                f"FROM points WHERE {' AND '.join(where)} ORDER BY window_end_us, id", params).fetchall()
        return [Point(m, f, v, s, e, value, t, status, json.loads(d)) for m, f, v, s, e, value, t, status, d in rows]

    def latest(self) -> list[Point]:
        with self._lock:  # SQLite gives a bare column the row of its group's MAX
            rows = self._db.execute(
                "SELECT metric, feature, version, window_start_us, MAX(window_end_us), value, threshold, status, detail "
                "FROM points GROUP BY metric, feature, version ORDER BY metric, feature, version").fetchall()
        return [Point(m, f, v, s, e, value, t, status, json.loads(d)) for m, f, v, s, e, value, t, status, d in rows]

    def close(self) -> None:
        self._db.close()
