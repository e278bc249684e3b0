"""Which connector serves which source or store. Engines only see the ports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parity.define.sources import (
    DeltaSource,
    DuckDBSource,
    MySQLSource,
    ParquetSource,
    PostgresSource,
    Source,
    SQLiteSource,
    StreamSource,
)
from parity.errors import ConfigError
from parity.ports.monitor_store import MonitorStore
from parity.ports.online_store import OnlineStore
from parity.ports.source import SourceReader

if TYPE_CHECKING:
    from parity.connectors.http import HttpClient


def reader_for(source: Source, base_dir: str) -> SourceReader:
    if isinstance(source, ParquetSource):
        from parity.connectors.parquet import ParquetReader

        return ParquetReader(source, base_dir)
    if isinstance(source, DeltaSource):
        from parity.connectors.delta import DeltaReader

        return DeltaReader(source, base_dir)
    if isinstance(source, DuckDBSource):
        from parity.connectors.duckdb import DuckDBReader

        return DuckDBReader(source, base_dir)
    if isinstance(source, SQLiteSource):
        from parity.connectors.sqlite import SQLiteReader

        return SQLiteReader(source, base_dir)
    if isinstance(source, PostgresSource):
        from parity.connectors.postgres import PostgresReader
        from parity.runtime.secrets import resolve

        return PostgresReader(source, resolve(source.connection, root=base_dir, what=f"source {source.name!r}"))
    if isinstance(source, MySQLSource):
        from parity.connectors.mysql import MySQLReader
        from parity.runtime.secrets import resolve

        return MySQLReader(source, resolve(source.connection, root=base_dir, what=f"source {source.name!r}"))
    if isinstance(source, StreamSource):
        from parity.connectors.event_log import EventLogReader

        return EventLogReader(source, base_dir)
    raise ConfigError(f"no connector reads {type(source).__name__} (source {source.name!r})")


def online_store(kind: str, path: str, url: str | None = None, root: str = ".", namespace: str = "parity") -> OnlineStore:
    if kind == "sqlite":
        from parity.connectors.sqlite_online import SQLiteOnlineStore

        return SQLiteOnlineStore(path)
    if kind == "redis":
        from parity.connectors.redis_online import RedisOnlineStore
        from parity.runtime.secrets import connection

        if not url:
            raise ConfigError("online_store.type is 'redis': set online_store.url (e.g. 'redis://127.0.0.1:6379/0' or 'env:NAME')")
        return RedisOnlineStore(connection(url, root=root, what="online_store.url"), namespace=namespace)
    raise ConfigError(f"unknown online store type {kind!r}; use 'sqlite' or 'redis'")


def monitor_store(path: str) -> MonitorStore:
    from parity.connectors.monitor_sqlite import SQLiteMonitorStore

    return SQLiteMonitorStore(path)


def http_client() -> HttpClient:
    from parity.connectors.http import HttpClient

    return HttpClient()
