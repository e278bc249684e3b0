"""Where raw data lives. A source only describes; connectors read (``parity.connectors``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from parity.define.location import caller_location
from parity.errors import DefinitionError

AsOf = Literal["visible", "event_time"]
RESERVED_PREFIX = "__parity"  # parity's own working columns; a source column may not be named so


def check_column_name(column: str | None, what: str, location: str) -> None:
    if column is not None and column.startswith(RESERVED_PREFIX):
        raise DefinitionError(f"{what}: column {column!r} starts with {RESERVED_PREFIX!r}, which parity keeps for its "
                              f"own columns; rename it in the source", location=location)


def check_zone(name: str, what: str, location: str) -> None:
    """A declared time zone must be a known IANA zone (checked when the definition is made)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise DefinitionError(f"{what}: timezone {name!r} is not a known time zone; use an IANA name such as 'UTC' "
                              f"or 'Europe/Berlin'", location=location) from None


@dataclass(frozen=True)
class Source:
    """Common to every source.

    ``event_time``: when the fact happened. ``created_time`` (optional): when parity could first
    have known it. With ``as_of="visible"`` (the default) a row is visible at t only when both are
    ≤ t; ``as_of="event_time"`` ignores the created time for visibility (Feast's behaviour).
    ``timezone`` declares the zone of naive timestamp columns; without it naive timestamps are an error.
    """

    name: str
    event_time: str
    created_time: str | None = None
    as_of: AsOf = "visible"
    timezone: str | None = None
    location: str = field(default="", compare=False, repr=False)

    kind = "source"
    answers_point_lookups = False  # can the source itself answer "the as-of row of key k at t"?

    def __post_init__(self) -> None:
        if not self.location:
            object.__setattr__(self, "location", caller_location())
        if self.as_of not in ("visible", "event_time"):
            raise DefinitionError(
                f"source {self.name!r}: as_of must be 'visible' or 'event_time', not {self.as_of!r}",
                location=self.location,
            )
        if not isinstance(self.event_time, str) or not self.event_time:
            raise DefinitionError(f"source {self.name!r}: name its event_time column", location=self.location)
        for column in (self.event_time, self.created_time):
            check_column_name(column, f"source {self.name!r}", self.location)
        if self.timezone is not None:
            check_zone(self.timezone, f"source {self.name!r}", self.location)

    def describe(self) -> dict[str, object]:
        """The parts of the source that change what values it yields (they go into versions)."""
        out = {k: v for k, v in self.__dict__.items() if k != "location"}
        out["kind"] = self.kind
        return out


@dataclass(frozen=True, kw_only=True)
class ParquetSource(Source):
    """A Parquet file, or a folder of them (read in file-name order; that is the ingestion order)."""

    path: str = ""
    kind = "parquet"


@dataclass(frozen=True, kw_only=True)
class DuckDBSource(Source):
    """A table in a DuckDB database file, opened read-only."""

    database: str = ""
    table: str = ""
    kind = "duckdb"


@dataclass(frozen=True, kw_only=True)
class SQLiteSource(Source):
    """A table in a SQLite database file. Timestamps stored as ISO-8601 text or Unix seconds."""

    database: str = ""
    table: str = ""
    kind = "sqlite"


@dataclass(frozen=True, kw_only=True)
class PostgresSource(Source):
    """A PostgreSQL table (``schema.table`` allowed), read offline through ADBC (Arrow-native) and
    looked up online by key through an async connection pool.

    ``connection`` is a reference to the connection string (``env:NAME`` or ``file:PATH``), never
    the string itself. ``sequence`` names a column giving ingestion order for full ties (a serial
    id); without it ties of (event, created) fall back to the physical row order (``ctid``).
    """

    table: str = ""
    connection: str = "env:PARITY_POSTGRES_URL"
    sequence: str | None = None
    kind = "postgres"
    answers_point_lookups = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_reference(self)


@dataclass(frozen=True, kw_only=True)
class MySQLSource(Source):
    """A MySQL or MariaDB table: offline scans with PyMySQL, online lookups through an aiomysql pool.

    ``connection`` is a reference (``env:NAME`` / ``file:PATH``) to ``mysql://user:pw@host:port/db``.
    ``sequence`` names an ingestion-order column (an auto-increment id) for full ties.
    """

    table: str = ""
    connection: str = "env:PARITY_MYSQL_URL"
    sequence: str | None = None
    kind = "mysql"
    answers_point_lookups = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_reference(self)


def _check_reference(source: PostgresSource | MySQLSource) -> None:
    # Definitions are code, reviewed and versioned: a secret must never be written into them.
    if not source.connection.startswith(("env:", "file:")):
        raise DefinitionError(
            f"source {source.name!r}: connection must be a reference such as 'env:PARITY_POSTGRES_URL' or "
            f"'file:secrets/db.url', not the connection string itself",
            location=source.location,
        )
    if not source.table:
        raise DefinitionError(f"source {source.name!r}: name the table (table='schema.table')", location=source.location)
