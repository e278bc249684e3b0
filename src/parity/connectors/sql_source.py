"""What the PostgreSQL and MySQL sources share: one plan per request, compiled to the SQL of a scan
and of a point lookup, so both paths read every column the same way.

Each system has one type table (``read_as`` / ``time_wire`` in its module): for a column of a given
database type and a feature dtype, the SELECT expression and the wire type the driver then hands
over. Scans (Arrow or row drivers) and lookups (async pools) use the same expressions, and the
values go through the one conversion table in ``semantics.reading``.

Visibility and the as-of order are compiled from ``semantics.visibility`` / ``semantics.asof_sql``:
each time column is compared with a parameter in its own type (``semantics.time``'s
``latest_*_at_or_before``), so a declared zone applies only to naive columns and indexes are used.
"""

from __future__ import annotations

import asyncio
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from parity.connectors.frames import check_columns, normalize
from parity.define.dtypes import DType, Int64
from parity.define.sources import MySQLSource, PostgresSource
from parity.errors import ConfigError, DataError, MissingExtraError, StoreError, one_line
from parity.ports.online_store import StoredRow
from parity.ports.secret import Secret
from parity.ports.source import Scan, ScanRequest
from parity.semantics import asof_sql, reading, visibility
from parity.semantics import keys as pkeys
from parity.semantics import time as ptime
from parity.semantics.ordering import SEQUENCE

# Parameters per lookup statement: PostgreSQL takes at most 65,535; batches also keep each
# statement's plan and result small. A key takes one per key column, two where it is narrowed by
# index first (strings), so the keys per batch follow from the key's shape.
LOOKUP_PARAMETERS = 10_000


@dataclass(frozen=True)
class Column:
    """A table column as the database describes it (``type`` lower-case, ``detail`` the full type)."""

    name: str
    type: str
    detail: str = ""
    key_position: int = 0  # position in the primary key (1-based), 0 when not part of it


@dataclass(frozen=True)
class Style:
    """How a driver takes parameters: ``$1``-numbered or ``%s`` (where a literal ``%`` must be doubled)."""

    numbered: bool

    def placeholder(self, i: int) -> str:
        return f"${i + 1}" if self.numbered else "%s"

    def text(self, sql: str) -> str:
        """Escape ``%`` in SQL built from identifiers, for drivers that format with ``%s``."""
        return sql if self.numbered else sql.replace("%", "%%")


NUMBERED, PERCENT = Style(True), Style(False)


@dataclass(frozen=True)
class Selected:
    alias: str
    sql: str  # the SELECT expression, identifiers quoted
    wire: reading.Wire
    template: str = "{c}"  # the expression with the column left out, to apply to another value


@dataclass
class _Plan:
    """A request resolved against the table's columns."""

    values: dict[str, Selected]  # request output name -> what is selected for it
    event: Selected
    created: Selected | None
    order: tuple[str, ...]  # ingestion order (a sequence column, ctid, the primary key), ascending
    order_is_column: bool  # whether ``order`` is one integer column the scan can return as the sequence

    def selected(self) -> list[Selected]:
        seen: dict[str, Selected] = {}
        for sel in [self.event, *([self.created] if self.created else []), *self.values.values()]:
            seen.setdefault(sel.alias, sel)
        return list(seen.values())


class SQLSourceBase(ABC):
    """Dialect-neutral parts. Subclasses give quoting, the type table and the drivers."""

    supports_point_lookup = True
    scan_style: Style = NUMBERED

    def __init__(self, source: PostgresSource | MySQLSource, secret: Secret, *, pool_size: int = 8) -> None:
        self.source = source
        self.secret = secret
        self.pool_size = pool_size
        self._pool: Any = None  # created on first lookup, on the event loop that uses it
        self._pool_lock = asyncio.Lock()  # two first lookups at once must not open two pools
        self._columns: dict[str, Column] | None = None
        # resolved lookups by request (the request is kept in it, so its id cannot be reused)
        self._lookups: dict[int, _Lookup] = {}

    # -- dialect ---------------------------------------------------------------------------

    @abstractmethod
    def quote(self, identifier: str) -> str:
        """The identifier quoted for the dialect."""

    @abstractmethod
    def read_as(self, column: Column, dtype: DType) -> tuple[str, reading.Wire | None]:
        """The system's type table: SELECT template (``{c}`` is the quoted column) and wire type
        (None: no feature dtype reads this column type)."""

    @abstractmethod
    def time_wire(self, column: Column) -> reading.Wire | None:
        """The wire type of an event or created time column (its kind of time; None: not a time)."""

    def key_match(self, expr: str, column: Column, dtype: DType, placeholder: str) -> tuple[str, str]:
        """(expression, parameter expression) that compare a key exactly (the raw column ``expr``
        and ``placeholder`` when the column's own equality already is exact)."""
        return expr, placeholder

    def use_lateral(self, key_columns: list[str]) -> bool:
        """Whether lookups read each key's newest rows by index (``asof_sql.point_lookup_lateral``)
        instead of ranking every row of the asked keys: the dialect has LATERAL and an index fits."""
        return False

    def key_problem(self, column: Column, dtype: DType, wire: reading.Wire) -> str | None:
        """Why this column cannot be compared exactly with keys of ``dtype`` (None: it can)."""
        if dtype.name == "Timestamp" and wire.kind not in ("aware", "utc"):
            return "a Timestamp key needs a zone-aware timestamp column (its value is then one instant)"
        if dtype.name == "Date" and wire.kind != "date":
            return "a Date key needs a date column"
        return None

    def key_fits(self, column: Column, value: object) -> bool:
        """Whether the column can hold this key at all (a key it cannot hold is simply not found)."""
        return True

    def key_value_sql(self, column: Column, selected: Selected, placeholder: str) -> str:
        """A key parameter in a VALUES list, typed to compare with its column (LATERAL lookups)."""
        return placeholder

    @abstractmethod
    def ingestion_order(self, columns: Mapping[str, Column], style: Style) -> tuple[tuple[str, ...], bool]:
        """(ORDER BY expressions for full ties, whether it is one integer column) without a ``sequence``."""

    @abstractmethod
    def load_columns(self) -> dict[str, Column]:
        """The table's columns (synchronously, for scans)."""

    @abstractmethod
    async def aload_columns(self) -> dict[str, Column]:
        """The table's columns (on the lookup pool)."""

    @abstractmethod
    def fetch_scan(self, sql: str, params: list[object], plan: _Plan) -> pl.DataFrame:
        """Run a scan: a frame with one column per selected alias and ``ordering.SEQUENCE`` (when selected)."""

    @abstractmethod
    async def _open_pool(self) -> Any:
        """Open the driver's async connection pool (called once, under a lock)."""

    async def pool(self) -> Any:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await self._open_pool()
            return self._pool

    @abstractmethod
    async def _query(self, sql: str, params: list[object]) -> tuple[list[str], list[tuple[object, ...]]]:
        """Run a lookup on the driver's pool: (column names, rows)."""

    # -- shared ----------------------------------------------------------------------------

    def recent_problem(self) -> str | None:
        """The last connection problem the driver reported on its own (a pool logs, it does not raise)."""
        return None

    def _fail(self, exc: BaseException) -> StoreError:
        """A driver error as a one-line StoreError whose message holds no secret (and no 400-digit
        value quoted back by the database: long messages are cut)."""
        text = one_line(str(exc))
        text = text if len(text) <= 400 else text[:400] + "…"
        return StoreError(self.secret.redact(f"{self.describe()}: {type(exc).__name__}: {text}"))

    def describe(self) -> str:
        return f"{self.source.kind} source {self.source.name!r} (table {self.source.table}, {self.secret.reference})"

    def ident(self, identifier: str, style: Style) -> str:
        """An identifier quoted for the dialect and escaped for the driver's parameter style."""
        return style.text(self.quote(identifier))

    def table_sql(self, style: Style) -> str:
        return ".".join(self.ident(part, style) for part in self.source.table.split("."))

    def _resolve(self, request: ScanRequest, columns: Mapping[str, Column], style: Style) -> _Plan:
        s = self.source
        check_columns(list(columns), s, request, self.describe())
        if s.sequence and s.sequence not in columns:
            raise DataError(f"{self.describe()}: has no sequence column {s.sequence!r} (its columns: {list(columns)})")
        by_sql: dict[str, str] = {}  # SELECT expression -> alias, so one expression is selected once

        def select(col: str, template: str, wire: reading.Wire) -> Selected:
            sql = template.format(c=self.ident(col, style))
            alias = by_sql.get(sql)
            if alias is None:
                taken = set(by_sql.values())
                alias = col if col not in taken else f"{col}__{len(taken)}"
                by_sql[sql] = alias
            return Selected(alias, sql, wire, template)

        def time(col: str) -> Selected:
            wire = self.time_wire(columns[col])
            # Database time columns are compared in SQL, which text cannot be (as instants)
            if wire is None or wire.kind not in reading.TIME_WIRES or wire.kind == "text":
                raise DataError(
                    f"{self.describe()}, column {col!r}: a {columns[col].detail or columns[col].type} column cannot be "
                    f"an event or created time here; use a timestamp, a date or Unix seconds (an integer)")
            if wire.kind == "naive":
                reading.Context(f"{self.describe()}, column {col!r}", s.timezone, s.location).need_zone()
            return select(col, "{c}", wire)

        event = time(s.event_time)
        created = time(s.created_time) if s.created_time else None
        if created is not None and s.created_time and created.wire.kind != event.wire.kind:
            raise DataError(
                f"{self.describe()}: event_time {s.event_time!r} ({columns[s.event_time].detail}) and created_time "
                f"{s.created_time!r} ({columns[s.created_time].detail}) must be the same kind of time, so the database "
                f"can order rows by them")
        values: dict[str, Selected] = {}
        for name, (col, dtype) in request.columns.items():
            template, maybe = self.read_as(columns[col], dtype)
            wire = reading.check_readable(maybe, dtype, where=f"{self.describe()}, column {col!r} ({request.where})",
                                          raw=columns[col].detail or columns[col].type)
            if name in request.keys:
                problem = self.key_problem(columns[col], dtype, wire)
                if problem:
                    raise DataError(f"{self.describe()}, column {col!r}: {problem}")
            if wire.kind == "naive" and dtype.name == "Timestamp":
                reading.Context(f"{self.describe()}, column {col!r}", s.timezone, s.location).need_zone()
            values[name] = select(col, template, wire)
        if s.sequence:
            _, seq_wire = self.read_as(columns[s.sequence], Int64)
            if seq_wire is None or seq_wire.kind != "int":
                raise DataError(f"{self.describe()}: sequence column {s.sequence!r} is "
                                f"{columns[s.sequence].detail or columns[s.sequence].type}; it must be an integer column "
                                f"that grows with each row (an auto-increment or serial id)")
            order: tuple[str, ...] = (self.ident(s.sequence, style),)
            is_column = True
        else:
            order, is_column = self.ingestion_order(columns, style)
        return _Plan(values, event, created, order, is_column)

    def _time_param(self, sel: Selected, t_us: int) -> object:
        """The greatest value of a time column whose instant is ≤ t, in the column's own type."""
        kind = sel.wire.kind
        if kind == "aware":
            return ptime.from_micros(t_us)
        if kind == "utc":
            return ptime.from_micros(t_us).replace(tzinfo=None)
        if kind == "int":
            return ptime.latest_second_at_or_before(t_us)
        context = reading.Context(self.describe(), self.source.timezone)
        if kind == "date":
            return ptime.latest_date_at_or_before(t_us, context.zone)
        return ptime.latest_wall_at_or_before(t_us, context.need_zone())

    def _times(self, plan: _Plan, style: Style, first: int) -> asof_sql.TimeColumns:
        with_created = plan.created is not None and visibility.uses_created(self.source)
        return asof_sql.TimeColumns(
            event=plan.event.sql, created=plan.created.sql if plan.created else None, sequence=plan.order,
            with_created=with_created, p_event=style.placeholder(first),
            p_created=style.placeholder(first + 1) if with_created else None,
        )

    def _time_params(self, plan: _Plan, t_us: int) -> list[object]:
        """Parameters for ``_times``' placeholders: t for the event column, and for the created one
        when it takes part in visibility."""
        params = [self._time_param(plan.event, t_us)]
        if plan.created is not None and visibility.uses_created(self.source):
            params.append(self._time_param(plan.created, t_us))
        return params

    def scan_sql(self, request: ScanRequest, plan: _Plan, *, numbered: bool = False,
                 style: Style | None = None) -> tuple[str, list[object]]:
        """The scan's SELECT and its parameters. ``numbered``: the ingestion order selected as
        ``ordering.SEQUENCE`` (a row number over it, when it is not one integer column) instead of
        the rows sorted by it — for a reader that splits the rows (Spark over JDBC, which formats
        no parameters: ``style`` NUMBERED, nothing escaped); ``plan`` resolved in the same style."""
        style = style or self.scan_style
        where: list[str] = []
        params: list[object] = []
        window = request.window
        for bound, compile_ in ((window.after_us, visibility.sql_visible_after),
                                (window.until_us, visibility.sql_visible_until)):
            if bound is None:
                continue
            times = self._times(plan, style, len(params))
            where.append(compile_(times.event, times.created, times.with_created, times.p_event, times.p_created))
            params.extend(self._time_params(plan, bound))
        selected = [f"{sel.sql} AS {self.ident(sel.alias, style)}" for sel in plan.selected()]
        if plan.order_is_column:
            selected.insert(0, f"{plan.order[0]} AS {self.ident(SEQUENCE, style)}")
        elif numbered:
            selected.insert(0, f"ROW_NUMBER() OVER (ORDER BY {', '.join(plan.order)}) AS {self.ident(SEQUENCE, style)}")
        # Rows without an event time come through only to be counted (they are never visible).
        condition = f" WHERE {plan.event.sql} IS NULL OR ({' AND '.join(where)})" if where else ""
        # With the order in a column the rows may come in any order (the as-of kernel ranks them);
        # otherwise the order they come in is the ingestion order, and the database must sort.
        order = "" if plan.order_is_column or numbered else f" ORDER BY {', '.join(plan.order)}"
        sql = f"SELECT {', '.join(selected)} FROM {self.table_sql(style)}{condition}{order}"
        return sql, params

    def _check_sequence(self, sequence: pl.Series) -> None:
        """A declared sequence decides full ties on every path, so it must be a unique, non-null order."""
        column = self.source.sequence
        if sequence.null_count():
            raise DataError(f"{self.describe()}: sequence column {column!r} is null in {sequence.null_count():,} rows; "
                            f"it must hold a value for every row")
        if sequence.n_unique() != len(sequence):
            repeated = sequence.filter(sequence.is_duplicated())[0]
            raise DataError(f"{self.describe()}: sequence column {column!r} repeats values (e.g. {repeated}); it must "
                            f"be unique, like an auto-increment or serial id")

    def _request_for(self, request: ScanRequest, plan: _Plan) -> tuple[ScanRequest, dict[str, reading.Wire]]:
        """The request as the scan's frame names its columns (aliases), and their wire types."""
        columns = {name: (plan.values[name].alias, dtype) for name, (_, dtype) in request.columns.items()}
        wires = {sel.alias: sel.wire for sel in plan.selected()}
        return dataclasses.replace(request, columns=columns), wires

    def check(self, request: ScanRequest) -> None:
        self._resolve(request, self._load_columns_cached(refresh=True), self.scan_style)

    def _load_columns_cached(self, *, refresh: bool = False) -> dict[str, Column]:
        if self._columns is None or refresh:
            columns = self.load_columns()
            if not columns:
                raise DataError(f"{self.describe()}: no such table")
            self._columns = columns
        return self._columns

    def scan(self, request: ScanRequest) -> Scan:
        plan = self._resolve(request, self._load_columns_cached(refresh=True), self.scan_style)
        sql, params = self.scan_sql(request, plan)
        frame = self.fetch_scan(sql, params, plan)
        if SEQUENCE not in frame.columns:
            frame = frame.with_row_index(SEQUENCE)  # rows came in ingestion order
        else:
            self._check_sequence(frame[SEQUENCE])
        renamed, wires = self._request_for(request, plan)
        # Time columns are selected first, under their own names (``_resolve``), so the source's
        # event/created names still name them in the frame.
        return normalize(frame.lazy(), self.source, renamed, self.describe(), wires)

    # -- lookups ---------------------------------------------------------------------------

    def _prepare_lookup(self, request: ScanRequest, columns: Mapping[str, Column]) -> _Lookup:
        """Everything about a lookup that does not depend on the keys asked: resolved once per request."""
        plan = self._resolve(request, columns, PERCENT)  # every lookup driver (psycopg, aiomysql) takes %s
        key_columns = [columns[request.columns[k][0]] for k in request.keys]
        context = reading.Context(self.describe(), self.source.timezone, self.source.location)
        readers: list[tuple[str, Callable[[object], object]]] = []  # (source column, reader), in row order
        for name in request.keys:
            column, dtype = request.columns[name]
            readers.append((column, _canonical(self._reader(plan.values[name], dtype, column), dtype)))
        readers.append((self.source.event_time, reading.time_scalar(plan.event.wire, context)))
        if plan.created is not None:
            readers.append((self.source.created_time or "", reading.time_scalar(plan.created.wire, context)))
        for name, (column, dtype) in request.columns.items():
            if name not in request.keys:
                readers.append((column, self._reader(plan.values[name], dtype, column)))
        # keys whose exact match is looser than the column's own comparison are narrowed by index first
        narrowed = [i for i, (col, name) in enumerate(zip(key_columns, request.keys))
                    if self.key_match(self.ident(col.name, PERCENT), col, request.columns[name][1], "%s")[0]
                    != self.ident(col.name, PERCENT)]
        return _Lookup(request, plan, key_columns, readers, self.use_lateral([c.name for c in key_columns]), narrowed)

    def lookup_sql(self, lookup: _Lookup, n_keys: int) -> str:
        """The as-of row of ``n_keys`` keys at t, compiled for the dialect (``semantics.asof_sql``).

        Keys are compared on the raw column (so indexes apply), exactly: through ``key_match`` when
        the column's own comparison is looser (collations), after the plain comparison narrows by index.
        Parameters: ``lookup_params``.
        """
        found = lookup.statements.get(n_keys)
        if found is not None:
            return found
        style, plan, request = PERCENT, lookup.plan, lookup.request
        times = self._times(plan, style, 0)
        key_sels = [plan.values[k] for k in request.keys]
        key_dtypes = [request.columns[k][1] for k in request.keys]
        raws = [self.ident(col.name, style) for col in lookup.key_columns]
        others = [sel for name, sel in plan.values.items() if name not in request.keys]
        extra = [plan.event, *([plan.created] if plan.created else []), *others]
        values = [f"{sel.sql} AS {self.ident('v' + str(i), style)}" for i, sel in enumerate(extra)]
        if lookup.lateral:
            row = "(" + ", ".join(self.key_value_sql(col, sel, style.placeholder(0))
                                  for col, sel in zip(lookup.key_columns, key_sels)) + ")"
            conditions = []
            for i, (raw, col, d) in enumerate(zip(raws, lookup.key_columns, key_dtypes)):
                exact, exact_param = self.key_match(raw, col, d, f"q.k{i}")
                conditions.append(f"{raw} = q.k{i}")
                if exact != raw:
                    conditions.append(f"{exact} = {exact_param}")
            sql = asof_sql.point_lookup_lateral(table=self.table_sql(style), key_rows=[row] * n_keys,
                                                key_match=" AND ".join(conditions), columns=values, times=times,
                                                keys=[sel.template.format(c=f"q.k{i}") for i, sel in enumerate(key_sels)])
        else:
            matches = [self.key_match(raw, col, d, style.placeholder(0))
                       for raw, col, d in zip(raws, lookup.key_columns, key_dtypes)]
            exprs = [m for m, _ in matches]
            row = ", ".join(p for _, p in matches)
            target = "(" + ", ".join(exprs) + ")" if len(exprs) > 1 else exprs[0]
            one = f"({row})" if len(exprs) > 1 else row
            conditions = [f"{raws[i]} IN ({', '.join([style.placeholder(0)] * n_keys)})" for i in lookup.narrowed]
            conditions.append(f"{target} IN ({', '.join([one] * n_keys)})")
            sql = asof_sql.point_lookup(
                table=self.table_sql(style),
                keys=[f"{sel.sql} AS {self.ident('k' + str(i), style)}" for i, sel in enumerate(key_sels)],
                key_matches=exprs, columns=values, times=times, key_filter=" AND ".join(conditions),
            )
        lookup.statements[n_keys] = sql
        return sql

    def lookup_params(self, lookup: _Lookup, keys: Sequence[tuple[object, ...]], t_us: int) -> list[object]:
        """The parameters of ``lookup_sql`` for these keys at t, in the order the SQL takes them."""
        request, plan = lookup.request, lookup.plan
        key_sels = [plan.values[k] for k in request.keys]
        key_dtypes = [request.columns[k][1] for k in request.keys]
        key_params = [[reading.parameter(sel.wire, d, v) for v, d, sel in zip(key, key_dtypes, key_sels)]
                      for key in keys]
        flat = [v for key in key_params for v in key]
        times = self._time_params(plan, t_us)
        if lookup.lateral:  # VALUES rows first, then t inside the per-key subquery
            return [*flat, *times]
        return [*times, *(key[i] for i in lookup.narrowed for key in key_params), *flat]

    async def lookup(
        self, request: ScanRequest, keys: Sequence[tuple[object, ...]], t_us: int
    ) -> dict[tuple[object, ...], StoredRow]:
        """The as-of row of each key at ``t_us``, asked of the database (``semantics.asof_sql``)."""
        try:
            if self._columns is None:
                columns = await self.aload_columns()
                if not columns:
                    raise DataError(f"{self.describe()}: no such table")
                self._columns = columns
            lookup = self._lookups.get(id(request))
            if lookup is None or lookup.request is not request:
                if len(self._lookups) > 64:  # callers that make a new request per call
                    self._lookups.clear()
                lookup = self._lookups[id(request)] = self._prepare_lookup(request, self._columns)
            keys = [key for key in keys if all(self.key_fits(c, v) for c, v in zip(lookup.key_columns, key))]
            batch_size = max(1, LOOKUP_PARAMETERS // (2 * len(request.keys)))
            out: dict[tuple[object, ...], StoredRow] = {}
            for start in range(0, len(keys), batch_size):
                batch = keys[start:start + batch_size]
                _, rows = await self._query(self.lookup_sql(lookup, len(batch)), self.lookup_params(lookup, batch, t_us))
                out.update(self.stored_rows(rows, lookup))
            return out
        except (MissingExtraError, DataError, ConfigError):
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors vary; the message is kept, secrets removed
            raise self._fail(exc) from None

    def stored_rows(self, rows: Sequence[Sequence[object]], lookup: _Lookup) -> dict[tuple[object, ...], StoredRow]:
        """Lookup rows (keys, event, created, other values) → storage form keyed like the online store.

        The per-value twin of a scan for the request path, with the same readers (``semantics.reading``).
        """
        n_keys = len(lookup.request.keys)
        has_created = lookup.plan.created is not None
        out: dict[tuple[object, ...], StoredRow] = {}
        for row in rows:
            values = []
            for (column, read), value in zip(lookup.readers, row):
                try:
                    values.append(read(value))
                except reading.BadValue as exc:
                    raise DataError(f"{self.describe()}, column {column!r}: looked-up value {value!r} {exc} "
                                    f"({lookup.request.where}, key {tuple(row[:n_keys])}); fix the data or the "
                                    f"feature's dtype") from None
            ev = values[n_keys]
            if not isinstance(ev, int):
                continue  # never visible (the SQL already leaves rows without an event time out)
            cr = values[n_keys + 1] if has_created else None
            rest = values[n_keys + 1 + has_created:]
            out[tuple(values[:n_keys])] = (ev, cr if isinstance(cr, int) else ev, tuple(rest))
        return out

    def _reader(self, sel: Selected, dtype: DType, column: str) -> Callable[[object], object]:
        return reading.scalar_reader(sel.wire, dtype, reading.Context(f"{self.describe()}, column {column!r}",
                                                                      self.source.timezone))


@dataclass
class _Lookup:
    """A lookup request resolved, kept for the request's life: its plan, key columns, the readers
    turning its rows into storage form (in row order), whether it probes by index (LATERAL), which
    keys it narrows by index, and its SQL by number of keys — so a request-time query only binds
    parameters."""

    request: ScanRequest
    plan: _Plan
    key_columns: list[Column]
    readers: list[tuple[str, Callable[[object], object]]]
    lateral: bool
    narrowed: list[int]  # positions of the key columns the SQL narrows by index before the exact match
    statements: dict[int, str] = field(default_factory=dict)


def _canonical(read: Callable[[object], object], dtype: DType) -> Callable[[object], object]:
    """A key reader giving the key's canonical form (``semantics.keys``)."""
    return lambda v: pkeys.canonical_value(dtype, read(v))


def rows_frame(names: Sequence[str], rows: Sequence[Sequence[object]], wires: Mapping[str, reading.Wire],
               where: str) -> pl.DataFrame:
    """Rows from a row-oriented driver as a frame, each column built in its wire's Polars type."""
    columns = list(zip(*rows)) if rows else [() for _ in names]
    data = {}
    for name, values in zip(names, columns):
        dtype = _POLARS_OF_WIRE.get(wires[name].kind) if name in wires else pl.Int64
        try:
            data[name] = pl.Series(name, list(values), dtype=dtype, strict=True)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            try:
                data[name] = pl.Series(name, list(values), strict=True)  # let the reader name the bad value
            except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
                raise DataError(f"{where}, column {name!r}: cannot read its values ({one_line(str(exc))})") from None
    return pl.DataFrame(data)


_POLARS_OF_WIRE: dict[str, pl.DataType | None] = {
    "int": pl.Int128(), "float": pl.Float64(), "decimal": pl.String(), "text": pl.String(),
    "utc": pl.Datetime("us"), "naive": pl.Datetime("us"), "date": pl.Date(), "aware": None, "list": None,
}
