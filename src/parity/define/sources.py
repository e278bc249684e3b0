"""Where raw data lives. A source only describes; connectors read (``parity.connectors``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from parity.define.dtypes import DType
from parity.define.expectations import Expectation, check_expectations
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
        if self.created_time is not None and self.created_time.startswith("_parity") and self.kind != "stream":
            raise DefinitionError(f"source {self.name!r}: column {self.created_time!r} belongs to parity's event log",
                                  location=self.location)
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
class DeltaSource(Source):
    """A Delta Lake table (``pip install "parity[delta]"``): its latest version, or ``version``,
    read as the Parquet files its log lists, partition columns included. Ingestion order: the order
    the files were added (their add time, then path), then row order. A table whose rows are not
    all in its files as they stand (deletion vectors, column mapping) is refused."""

    path: str = ""
    version: int | None = None
    kind = "delta"


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


INGESTED_AT = "_parity_ingested_at"  # the event log's column: when each event's batch was committed
LOG_SEQUENCE = "_parity_log_seq"  # the event log's column: each accepted event's position in the log


@dataclass(frozen=True)
class NatsSubject:
    """Where a stream's events arrive on NATS JetStream: ``subject`` (wildcards allowed) of the
    JetStream ``stream`` (created with that subject when missing). One event per message, or a
    JSON array of events per message."""

    subject: str
    stream: str


@dataclass(frozen=True)
class MqttTopic:
    """Where a stream's events arrive on MQTT: ``topic`` (``+``/``#`` wildcards allowed), received at
    QoS 1 on a persistent session (acknowledged only after the events are committed).
    ``fields_from_topic`` fills event fields from topic levels: ``{"machine_id": 1}`` reads
    ``factory/m7/temperature`` as machine ``m7``."""

    topic: str
    qos: int = 1
    fields_from_topic: dict[str, int] = field(default_factory=dict)  # field -> topic level (0-based)

    def __hash__(self) -> int:
        return hash((self.topic, self.qos, tuple(sorted(self.fields_from_topic.items()))))


@dataclass(frozen=True, kw_only=True)
class StreamSource(Source):
    """Events pushed to parity (``project.push``) or consumed from NATS JetStream or MQTT by
    ``parity stream``, validated against ``schema`` and appended to the project's event log, which
    is the source offline: training sets read exactly the events serving saw.

    ``event_id`` names the column that identifies an event (duplicates are applied once).
    Visibility is as known at t: an event becomes visible when its batch was committed
    (``created_time`` may name a trusted created-time column of the schema instead; with
    ``as_of="event_time"`` ingestion time is ignored). ``max_lateness``: an event whose event time is
    further behind the newest event time seen is dead-lettered with its reason instead of applied
    (None: any lateness is applied). ``expect`` maps columns to expectations
    (``define.expectations``); with ``on_violation="quarantine"`` (the default) an event that breaks
    one is dead-lettered with the reason — it never reaches the log or the online store; with
    ``"warn"`` it is applied, and counted and reported per expectation. (A view's batch defaults to
    warn because quarantine holds back every row of it; an event is refused alone, so refusing
    costs nothing but the event.)
    """

    schema: dict[str, DType] = field(default_factory=dict)
    event_id: str = ""
    max_lateness: dt.timedelta | None = None
    nats: NatsSubject | None = None
    mqtt: MqttTopic | None = None
    expect: dict[str, list[Expectation]] = field(default_factory=dict)
    on_violation: str = "quarantine"
    kind = "stream"

    def __post_init__(self) -> None:
        if self.created_time is None:
            object.__setattr__(self, "created_time", INGESTED_AT)
        super().__post_init__()
        what = f"stream source {self.name!r}"
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace("-", "").isalnum():
            raise DefinitionError(f"{what}: a stream source's name names its event log folder; use letters, digits, "
                                  f"'_' and '-'", location=self.location)
        if not self.schema:
            raise DefinitionError(f"{what}: declare its events' schema={{column: dtype}}", location=self.location)
        object.__setattr__(self, "schema", dict(self.schema))
        for column, dtype in self.schema.items():
            if not isinstance(column, str) or not column or column.startswith(("__", "_parity")):
                raise DefinitionError(f"{what}: column {column!r} may not start with '__' or '_parity'",
                                      location=self.location)
            if not isinstance(dtype, DType) or dtype.inner is not None:
                raise DefinitionError(f"{what}: column {column!r} needs a scalar dtype, got {dtype!r}",
                                      location=self.location)
        for role, column in (("event_time", self.event_time), ("event_id", self.event_id)):
            if column not in self.schema:
                raise DefinitionError(f"{what}: {role} {column!r} is not a column of its schema "
                                      f"({sorted(self.schema)})", location=self.location)
        if self.schema[self.event_time].name != "Timestamp":
            raise DefinitionError(f"{what}: event_time {self.event_time!r} must be a Timestamp column",
                                  location=self.location)
        if self.created_time != INGESTED_AT and self.created_time not in self.schema:
            raise DefinitionError(f"{what}: created_time {self.created_time!r} is not a column of its schema",
                                  location=self.location)
        if self.max_lateness is not None and self.max_lateness < dt.timedelta(0):
            raise DefinitionError(f"{what}: max_lateness must not be negative", location=self.location)
        if self.on_violation not in ("warn", "quarantine"):
            raise DefinitionError(f"{what}: on_violation={self.on_violation!r}; expected 'quarantine' (dead-letter "
                                  f"an event that breaks an expectation) or 'warn' (apply it, and count it)",
                                  location=self.location)
        checked: dict[str, list[Expectation]] = {}
        for column, expectations in dict(self.expect).items():
            if column not in self.schema:
                raise DefinitionError(f"{what}: expect names {column!r}, which is not a column of its schema",
                                      location=self.location)
            found = list(check_expectations(expectations, self.schema[column].name, f"{what} column {column!r}",
                                            self.location))
            if any(e.kind == "not_null" and e.min_rate != 1.0 for e in found):
                raise DefinitionError(f"{what} column {column!r}: an event is checked alone, so expect.not_null "
                                      "takes no rate here", location=self.location)
            checked[column] = found
        object.__setattr__(self, "expect", checked)
        if self.nats is not None and self.mqtt is not None:
            raise DefinitionError(f"{what}: give nats= or mqtt=, not both (define two sources)", location=self.location)
        if self.mqtt is not None and self.mqtt.qos not in (1, 2):
            raise DefinitionError(f"{what}: MQTT qos must be 1 or 2 (QoS 0 can lose events)", location=self.location)

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["schema"] = {c: repr(d) for c, d in self.schema.items()}
        out["max_lateness_s"] = None if self.max_lateness is None else self.max_lateness.total_seconds()
        # what is done with an event that breaks an expectation is policy, not what the source
        # yields: switching it must not re-version (and rebuild) every view of the source
        out.pop("on_violation", None)
        return out
