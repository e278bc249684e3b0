"""What the PostgreSQL and MySQL sources share: SQL for scans and point lookups, and turning
rows into the same normalized frame every connector returns (``connectors.frames``)."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from parity.connectors.frames import check_columns, normalize
from parity.define.dtypes import DType, Timestamp
from parity.define.sources import MySQLSource, PostgresSource
from parity.errors import DataError, MissingExtraError, NaiveTimestampError, StoreError
from parity.ports.online_store import StoredRow
from parity.ports.secret import Secret
from parity.ports.source import ScanRequest
from parity.semantics import asof, asof_sql
from parity.semantics.ordering import SEQUENCE

_EPOCH_DATE = dt.date(1970, 1, 1)
from parity.semantics.time import from_micros, to_micros


class SQLSourceBase(ABC):
    """Dialect-neutral parts. Subclasses give quoting, placeholders and the drivers."""

    supports_point_lookup = True
    physical_order: str | None = None  # a fallback ingestion order when no sequence column is declared

    def __init__(self, source: PostgresSource | MySQLSource, secret: Secret, *, pool_size: int = 8) -> None:
        self.source = source
        self.secret = secret
        self.pool_size = pool_size
        self._pool: Any = None  # created on first lookup, on the event loop that uses it

    def _fail(self, exc: Exception) -> StoreError:
        """A driver error as a StoreError whose message holds no secret."""
        return StoreError(self.secret.redact(f"{self.describe()}: {type(exc).__name__}: {exc}"))

    @abstractmethod
    def quote(self, identifier: str) -> str:
        """The identifier quoted for the dialect."""

    def describe(self) -> str:
        return f"{self.source.kind} source {self.source.name!r} (table {self.source.table}, {self.secret.reference})"

    def table_sql(self) -> str:
        return ".".join(self.quote(part) for part in self.source.table.split("."))

    def param_time(self, us: int) -> dt.datetime:
        """A time parameter in the form the source's columns hold: aware UTC, or naive in the declared zone."""
        value = from_micros(us)
        if self.source.timezone:
            return value.astimezone(ZoneInfo(self.source.timezone)).replace(tzinfo=None)
        return value

    def sequence_sql(self) -> str:
        if self.source.sequence:
            return self.quote(self.source.sequence)
        return self.physical_order or "0"

    def wanted(self, request: ScanRequest) -> list[str]:
        cols = {self.source.event_time, *(c for c, _ in request.columns.values())}
        if self.source.created_time:
            cols.add(self.source.created_time)
        return sorted(cols)

    def scan_sql(self, request: ScanRequest, placeholder: Sequence[str]) -> tuple[str, list[object]]:
        s = self.source
        event = self.quote(s.event_time)
        created = self.quote(s.created_time) if s.created_time else None
        visible = asof_sql.visible_at(event, created, asof.uses_created(s))
        where: list[str] = []
        params: list[object] = []
        if request.visible_after_us is not None:
            where.append(f"{visible} > {placeholder[len(params)]}")
            params.append(self.param_time(request.visible_after_us))
        if request.visible_until_us is not None:
            where.append(f"{visible} <= {placeholder[len(params)]}")
            params.append(self.param_time(request.visible_until_us))
        seq = self.sequence_sql()
        # Without a declared sequence column the result order is the ingestion order; the reader
        # numbers the rows itself.
        seq_select = self.quote(self.source.sequence) if self.source.sequence else "0"
        sql = (
            f"SELECT {seq_select} AS {self.quote(SEQUENCE)}, {', '.join(self.quote(c) for c in self.wanted(request))} "
            f"FROM {self.table_sql()}" + (f" WHERE {' AND '.join(where)}" if where else "") + f" ORDER BY {seq}"
        )
        return sql, params

    def lookup_sql(
        self, request: ScanRequest, key_names: Sequence[str], keys: Sequence[tuple[object, ...]], t_us: int, placeholder: str
    ) -> tuple[str, list[object]]:
        s = self.source
        key_columns = [request.columns[k][0] for k in key_names]
        others = [c for c in self.wanted(request) if c not in key_columns]
        sql = asof_sql.point_lookup(
            table=self.table_sql(),
            keys=[self.quote(c) for c in key_columns],
            columns=[f"0 AS {self.quote(SEQUENCE)}", *(self.quote(c) for c in others)],
            event=self.quote(s.event_time),
            created=self.quote(s.created_time) if s.created_time else None,
            uses_created=asof.uses_created(s),
            sequence=self.sequence_sql(),
            n_keys=len(keys),
            placeholder=placeholder,
        )
        params: list[object] = [self.param_time(t_us)]
        for key in keys:
            params.extend(key)
        return sql, params

    @abstractmethod
    async def _query(self, sql: str, params: list[object]) -> tuple[list[str], list[tuple[object, ...]]]:
        """Run a lookup on the driver's pool: (column names, rows)."""

    async def lookup(
        self, request: ScanRequest, key_names: Sequence[str], keys: Sequence[tuple[object, ...]], t_us: int
    ) -> dict[tuple[object, ...], StoredRow]:
        """The as-of row of each key at ``t_us``, asked of the database (``semantics.asof_sql``)."""
        sql, params = self.lookup_sql(request, key_names, keys, t_us, "%s")
        try:
            names, rows = await self._query(sql, params)
        except MissingExtraError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the message is kept, secrets removed
            raise self._fail(exc) from None
        return self.stored_rows(names, rows, request, key_names)

    def stored_rows(
        self, names: list[str], rows: Sequence[Sequence[object]], request: ScanRequest, key_names: Sequence[str]
    ) -> dict[tuple[object, ...], StoredRow]:
        """Point-lookup rows (one per key) → storage form keyed like the online store.

        The per-value twin of ``frame_from_rows`` for the request path, where building a frame
        would cost more than the database round trip; the PostgreSQL property test holds the two
        to the same answers.
        """
        position = {n: i for i, n in enumerate(names)}
        check_columns(names, self.source, request, self.describe())
        event_at = position[self.source.event_time]
        created_at = position[self.source.created_time] if self.source.created_time else None
        converters = [(position[col], _converter(dtype, self.source, col)) for _, (col, dtype) in request.columns.items()]
        n_keys = len(key_names)
        to_us = _converter(Timestamp, self.source, self.source.event_time)
        out: dict[tuple[object, ...], StoredRow] = {}
        for row in rows:
            converted = [convert(row[i]) for i, convert in converters]
            ev = to_us(row[event_at])
            cr = to_us(row[created_at]) if created_at is not None else None
            if ev is None:
                continue  # a row without an event time is never visible
            out[tuple(converted[:n_keys])] = (ev, ev if cr is None else cr, tuple(converted[n_keys:]))  # type: ignore[assignment]
        return out

    def frame_from_rows(self, names: list[str], rows: Sequence[Sequence[object]], request: ScanRequest) -> pl.DataFrame:
        """Rows from a driver → the normalized frame (the same conversion scans use)."""
        check_columns(names, self.source, request, self.describe())
        if rows:
            frame = pl.DataFrame([list(r) for r in rows], schema=names, orient="row", infer_schema_length=None)
        else:
            frame = pl.DataFrame({n: [] for n in names})
        if SEQUENCE not in frame.columns:
            frame = frame.with_row_index(SEQUENCE)
        if "parity_rank" in frame.columns:
            frame = frame.drop("parity_rank")
        try:
            return normalize(frame.lazy(), self.source, request)
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{self.describe()}: {exc}") from None


def _converter(dtype: DType, source: PostgresSource | MySQLSource, column: str) -> Callable[[object], object]:
    """Driver value → storage form (semantics.values), with the same rules as ``frames.normalize``."""
    if dtype.inner is not None:
        inner = _converter(dtype.inner, source, column)
        return lambda v: None if v is None else [inner(x) for x in v]  # type: ignore[attr-defined]
    name = dtype.name
    if name == "Timestamp":
        zone = ZoneInfo(source.timezone) if source.timezone else None

        def timestamp(v: object) -> object:
            if v is None:
                return None
            if not isinstance(v, dt.datetime):
                raise DataError(f"source {source.name!r}: column {column!r} holds {type(v).__name__}, not timestamps")
            if v.tzinfo is None:
                if zone is None:
                    raise NaiveTimestampError(
                        f"source {source.name!r}: column {column!r} holds timestamps without a time zone; declare "
                        f"timezone='UTC' (or the zone they are in) on the source (defined at {source.location})"
                    )
                v = v.replace(tzinfo=zone)
            return to_micros(v.astimezone(dt.UTC))

        return timestamp
    if name == "Date":
        return lambda v: None if v is None else (v - _EPOCH_DATE).days  # type: ignore[operator]
    if name == "Float64":
        return lambda v: None if v is None else float(v)  # type: ignore[arg-type]
    if name == "Int64":
        return lambda v: None if v is None else int(v)  # type: ignore[call-overload]
    if name == "Bool":
        return lambda v: None if v is None else bool(v)
    return lambda v: None if v is None else str(v)
