"""Normalizing raw source columns — what every connector's scan ends with.

Event and created times become UTC µs and values their feature dtypes, by the one table in
``semantics.reading``; key columns take their canonical form (``semantics.keys``); the visibility
window is applied by ``semantics.visibility`` (rows without an event time are counted and dropped).
A value that does not fit is a one-line error naming the source, column, row and value.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import glob
import os
from collections.abc import Callable, Iterator, Mapping

import polars as pl

from parity.define.sources import Source
from parity.errors import DataError, MissingColumnError, NaiveTimestampError, one_line
from parity.ports.source import Scan, ScanRequest
from parity.semantics import keys as pkeys
from parity.semantics import partitions, reading, visibility
from parity.semantics.ordering import CREATED, EVENT, EVENT_WALL, SEQUENCE

_BAD = "__parity_bad_"


def check_columns(available: list[str], source: Source, request: ScanRequest, where_source: str) -> None:
    needed = [source.event_time] + ([source.created_time] if source.created_time else [])
    needed += [col for col, _ in request.columns.values()]
    for col in needed:
        if col not in available:
            close = difflib.get_close_matches(col, available, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            user = next((name for name, (c, _) in request.columns.items() if c == col), None)
            by = f" needed by {user}" if user else " (its event/created time)"
            raise MissingColumnError(
                f"{where_source} has no column {col!r}{by} in {request.where or 'a feature view'}"
                f"{hint} (its columns: {available}; source defined at {source.location})"
            )


def context(source: Source, where_source: str, column: str) -> reading.Context:
    return reading.Context(f"{where_source}, column {column!r}", source.timezone, source.location)


def check_types(
    schema: Mapping[str, pl.DataType], source: Source, request: ScanRequest, where_source: str,
    wires: Mapping[str, reading.Wire] | None = None,
) -> None:
    """Every requested column readable as its dtype, and the time columns as times (no data read)."""
    wires = wires or {}
    for col in [source.event_time] + ([source.created_time] if source.created_time else []):
        wire = wires.get(col) or reading.wire_of_polars(schema[col])
        if wire is None or (wire.kind not in reading.TIME_WIRES and wire.kind != "null"):
            raise DataError(f"{where_source}, column {col!r}: a {schema[col]} column cannot be an event or created "
                            f"time; use a timestamp, a date, Unix seconds (an integer) or ISO-8601 text")
        if wire.kind == "naive":
            context(source, where_source, col).need_zone()
    for col, dtype in request.columns.values():
        wire = wires.get(col) or reading.wire_of_polars(schema[col])
        reading.check_readable(wire, dtype, where=f"{where_source}, column {col!r} ({request.where})", raw=schema[col])
        if wire is not None and wire.kind == "naive" and dtype.name == "Timestamp":
            context(source, where_source, col).need_zone()


def normalize(
    raw: pl.LazyFrame, source: Source, request: ScanRequest, where_source: str,
    wires: Mapping[str, reading.Wire] | None = None,
) -> Scan:
    """Turn a raw frame (source columns + ``ordering.SEQUENCE``) into the ScanRequest's result.

    ``wires`` overrides the wire type of columns whose Polars type alone does not say it (a
    database's numeric read as text, say).
    """
    normalizing = _Reading(raw, source, request, where_source, wires or {})
    return normalizing.checked(normalizing.collect(normalizing.frame))


def spill(
    raw: pl.LazyFrame, source: Source, request: ScanRequest, where_source: str, count: int, folder: str,
) -> list[Callable[[], Scan]]:
    """``normalize``, split into ``count`` key partitions in one pass: the rows are written to
    ``folder`` (Arrow IPC, one folder a partition, streamed: never all in memory) and each
    partition's ``Scan`` is read back, and checked, when its function is called."""
    normalizing = _Reading(raw, source, request, where_source, {})
    schema = normalizing.frame.collect_schema()
    tagged = normalizing.frame.with_columns(partitions.partition_of(request.key_types, count).alias(_PART))
    normalizing.sink(tagged, pl.PartitionBy(folder, key=_PART, include_key=False), folder)
    masks = [pl.col(mask) for mask, _, _ in normalizing.checks]
    written = sorted(glob.glob(os.path.join(glob.escape(folder), "*", "*.ipc")))
    if masks and written:  # the first bad value of all the rows, as a scan in one piece would find it
        normalizing.checked(pl.scan_ipc(written, glob=False).select(SEQUENCE, EVENT, *masks)
                         .filter(pl.any_horizontal(masks)).collect())

    def read(index: int) -> Scan:
        files = sorted(glob.glob(os.path.join(glob.escape(folder), f"{_PART}={index}", "*.ipc")))
        return normalizing.checked(pl.scan_ipc(files, glob=False).collect() if files else pl.DataFrame(schema=schema))

    return [functools.partial(read, index) for index in range(count)]


_PART = "__parity_partition"


class _Reading:
    """One normalization: the lazy frame of the request's rows, and the checks its rows pass."""

    def __init__(self, raw: pl.LazyFrame, source: Source, request: ScanRequest, where_source: str,
                 wires: Mapping[str, reading.Wire]) -> None:
        self.raw, self.source, self.request, self.where_source = raw, source, request, where_source
        self.frame, self.checks, self.wire_of = _normalized(raw, source, request, where_source, wires)

    def collect(self, frame: pl.LazyFrame) -> pl.DataFrame:
        with self._read_errors():
            return frame.collect()

    def sink(self, frame: pl.LazyFrame, target: pl.PartitionBy, folder: str) -> None:
        with self._read_errors():
            try:
                frame.sink_ipc(target)
            except OSError as exc:  # what Polars raises when a file cannot be written (a full disk, say)
                raise DataError(f"{self.where_source} ({self.request.where}): cannot write its key partitions to "
                                f"{folder}: {one_line(str(exc))}; free space there or set TMPDIR to a folder "
                                f"that has it") from None

    @contextlib.contextmanager
    def _read_errors(self) -> Iterator[None]:
        try:
            yield
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{self.where_source} ({self.request.where}): cannot read its columns: "
                            f"{one_line(str(exc))}") from None

    def checked(self, rows: pl.DataFrame) -> Scan:
        """The rows, once every value was found to fit (else a one-line error naming the first
        row that does not), without the rows that have no event time (counted)."""
        for mask, col, what in self.checks:
            if rows[mask].any():
                _raise_bad(self.raw, rows, mask, col, what, self.source, self.where_source, self.wire_of(col))
        rows = rows.drop([m for m, _, _ in self.checks])
        no_event = rows[EVENT].null_count()
        if no_event:
            rows = rows.filter(pl.col(EVENT).is_not_null())
        return Scan(rows, no_event)


_Check = tuple[str, str, object]  # (bad-mask column, source column, what it was read as)


def _normalized(
    raw: pl.LazyFrame, source: Source, request: ScanRequest, where_source: str, wires: Mapping[str, reading.Wire],
) -> tuple[pl.LazyFrame, list[_Check], Callable[[str], reading.Wire]]:
    """The lazy frame of ``normalize``'s rows, with a bad-value mask column per check."""
    schema = raw.collect_schema()
    check_types(schema, source, request, where_source, wires)

    def wire_of(col: str) -> reading.Wire:
        return wires.get(col) or reading.wire_of_polars(schema[col])  # type: ignore[return-value]

    exprs = [pl.col(SEQUENCE).cast(pl.Int64)]
    checks: list[_Check] = []

    def add(vec: reading.Vector, alias: str, col: str, what: object) -> None:
        exprs.append(vec.value.alias(alias))
        if vec.bad is not None:
            exprs.append(vec.bad.fill_null(False).alias(_BAD + alias))
            checks.append((_BAD + alias, col, what))

    time_columns = [(EVENT, source.event_time)] + ([(CREATED, source.created_time)] if source.created_time else [])
    for alias, col in time_columns:
        add(reading.time_reader(wire_of(col), schema[col], pl.col(col), context(source, where_source, col)),
            alias, col, "a time")
    if not source.created_time:
        exprs.append(pl.lit(None, dtype=pl.Int64).alias(CREATED))
    wall = reading.wall_reader(wire_of(source.event_time), schema[source.event_time], pl.col(source.event_time))
    if wall is not None:  # naive times: two wall times in a skipped hour tie as instants (ordering)
        exprs.append(wall.alias(EVENT_WALL))
    for name, (col, dtype) in request.columns.items():
        vec = reading.vector_reader(wire_of(col), dtype, schema[col], pl.col(col), context(source, where_source, col))
        if name in request.keys:
            vec = reading.Vector(pkeys.canonical_expr(dtype, vec.value), vec.bad)
        add(vec, name, col, dtype)
    frame = raw.select(exprs)
    if request.partition is not None:  # keys are canonical here: the rule the probes are split by
        frame = frame.filter(partitions.member_of(request.key_types, request.partition))
    if request.sequences is not None:  # the bad-value masks are kept with the rows they flag
        flagged = [pl.col(mask) for mask, _, _ in checks]
        frame = frame.filter(pl.col(SEQUENCE).is_in(request.sequences.implode())
                             | (pl.any_horizontal(flagged) if flagged else pl.lit(False)))
    window = request.window
    if window.after_us is not None or window.until_us is not None:
        # Rows without an event time are kept through the window only to be counted below.
        frame = frame.filter(visibility.window_expr(visibility.uses_created(source), window) | pl.col(EVENT).is_null())
    return frame, checks, wire_of


def _raise_bad(raw: pl.LazyFrame, rows: pl.DataFrame, mask: str, col: str, what: object, source: Source,
               where_source: str, wire: reading.Wire) -> None:
    seq = rows.filter(pl.col(mask)).select(pl.col(SEQUENCE).min()).item()  # the first in ingestion order, however split
    one = raw.filter(pl.col(SEQUENCE).cast(pl.Int64) == seq).select(col)
    if one.collect_schema()[col].is_temporal():
        # A time outside the years 1 to 9999 cannot become a Python value: show what is stored.
        stored = one.select(pl.col(col).to_physical()).collect()[col][0]
        probe = one.select(pl.col(col).dt.year().is_between(1, 9999)).collect()[col][0]
        if not probe:
            raise DataError(f"{where_source}, column {col!r}, row {seq}: value {stored} (as stored) is outside the years "
                            f"1 to 9999; fix the data (source defined at {source.location})")
    value = one.collect()[col][0]
    reason, error = "does not fit", DataError
    try:
        if what == "a time":
            reading.time_scalar(wire, context(source, where_source, col))(value)
        else:
            reading.scalar_reader(wire, what, context(source, where_source, col))(value)  # type: ignore[arg-type]
    except reading.NaiveValue as exc:
        reason, error = str(exc), NaiveTimestampError
    except reading.BadValue as exc:
        reason = str(exc)
    target = what if what == "a time" else f"a {what!r} feature"
    raise error(f"{where_source}, column {col!r}, row {seq}: value {value!r} {reason} (read as {target}); "
                f"fix the data or the feature's dtype (source defined at {source.location})")
