"""Materialization on Spark: each key partition's as-of rows chosen on the executors by the local
rule (``semantics.asof.latest``), then written to the online store by the executors themselves,
monotonically (the store keeps the newer of what it holds and what it is given).

The run keeps the local run's contract: the watermark and the reasons for a full read are decided
the same way (``materialize.start``); the expectations are checked over the whole batch before
anything is written — per-partition tallies add up to the whole (``semantics.expectations``) — so
a quarantined batch writes nothing; the watermark moves only once every partition is written.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from parity.define.features import FeatureView
from parity.ingest.materialize import (
    MaterializeReport,
    Progress,
    _merged,
    start,
    storage_rows,
    stored,
    value_tallies,
    violations_of,
)
from parity.ports.distributed import (
    PART,
    DistributedRows,
    Keyed,
    Session,
    carried_iter,
    carried_one,
    driver_errors,
    spark_schema,
    to_spark,
)
from parity.ports.online_store import OnlineStore
from parity.ports.source import view_scan
from parity.semantics import asof, expectations, visibility
from parity.semantics import partitions as partition_rule
from parity.semantics.expectations import Violation
from parity.semantics.ordering import CREATED, EVENT
from parity.semantics.values import storage_polars_type
from parity.semantics.visibility import Window


def _chosen(view: FeatureView, rows: DistributedRows, session: Session, window: Window, until_us: int,
            count: int) -> tuple[Any, Any, Any]:
    """Every key's chosen row (storage form), lazily, with the accumulators of what was read."""
    from pyspark.sql.pandas.types import from_arrow_schema

    keys = list(view.entity.keys)
    request = view_scan(view, window=window)
    key_types = request.key_types
    uses_created = visibility.uses_created(view.source)
    skipped = session.sparkContext.accumulator({}, Keyed())
    stats = session.sparkContext.accumulator({}, Keyed())  # partition -> (rows, null created, newest, dupes, tallies)

    def part_of(frame: pl.DataFrame) -> pl.Series:
        return frame.select(partition_rule.partition_of(key_types, count).cast(pl.Int64)).to_series()

    source_rows = rows.rows(session, request, skipped, part_of).repartition(count, PART)
    fields = [pa.field(k, pl.Series([], dtype=storage_polars_type(d)).to_arrow().type) for k, d in view.entity.keys.items()]
    fields += [pa.field(EVENT, pa.int64()), pa.field(CREATED, pa.int64())]
    fields += [pa.field(f.name, pl.Series([], dtype=storage_polars_type(f.dtype)).to_arrow().type) for f in view.features]
    target = spark_schema(pa.schema(fields))

    def choose(left: pa.Table) -> pa.Table:
        got = pl.from_arrow(left.drop_columns([PART]))
        assert isinstance(got, pl.DataFrame)
        if got.height == 0:
            return target.empty_table()
        part = left.column(PART)[0].as_py()
        chosen = asof.latest(got, keys, uses_created=uses_created, t_us=until_us)
        storage = storage_rows(view, chosen)
        newest = int(got[EVENT].max())  # type: ignore[arg-type]
        stats.add({part: (got.height, got[CREATED].null_count(), newest,
                          expectations.check_view_rows(got, view, keys), value_tallies(view, chosen))})
        return to_spark(storage.to_arrow(), target)

    chosen = source_rows.groupBy(PART).applyInArrow(carried_one(choose), from_arrow_schema(target))
    return chosen, skipped, stats


@dataclass
class _Read:
    """One read of the view on Spark, computed and kept: its chosen rows and what was read."""

    chosen: Any
    keys: int
    rows_read: int
    null_created: int
    newest_event_us: int | None
    duplicates: list[Violation]
    tallies: list[expectations.Tally]
    no_event_time: int


def _read(view: FeatureView, rows: DistributedRows, session: Session, window: Window, until_us: int,
          count: int) -> _Read:
    from pyspark import StorageLevel

    chosen, skipped, stats = _chosen(view, rows, session, window, until_us, count)
    chosen = chosen.persist(StorageLevel.MEMORY_AND_DISK)
    with driver_errors():
        keys = chosen.count()
    parts = [p for _, p in sorted(stats.value.items())]  # in partition order: the first example is stable
    rows_read = sum(p[0] for p in parts)
    duplicates = [dataclasses.replace(v, checked=rows_read) for v in _merged([v for p in parts for v in p[3]])]
    return _Read(chosen, keys, rows_read, sum(p[1] for p in parts), max((p[2] for p in parts), default=None),
                 duplicates, [t for p in parts for t in p[4]], sum(skipped.value.values()))


def materialize_view_on_spark(view: FeatureView, table: str, rows: DistributedRows, store: OnlineStore,
                              store_factory: Callable[[], OnlineStore], session: Session, *, until_us: int,
                              incremental: bool, progress: Progress, partitions: int) -> MaterializeReport:
    """The view materialized by Spark's executors into the store that ``store_factory`` opens on
    each of them (``store`` is the driver's: the watermark)."""
    started = start(view, table, store, until_us=until_us, incremental=incremental, progress=progress,
                    partitions=partitions)
    if isinstance(started, MaterializeReport):
        return started
    watermark, full_because = started
    batch = _read(view, rows, session, Window(after_us=watermark, until_us=until_us), until_us, partitions)
    if watermark is not None and batch.null_created:
        batch.chosen.unpersist()
        full_because = f"{batch.null_created:,} rows have no created time, so when they arrived is unknown"
        watermark = None
        batch = _read(view, rows, session, Window(until_us=until_us), until_us, partitions)
    skipped = (f"; {batch.no_event_time:,} rows without an event time skipped (never visible)"
               if batch.no_event_time else "")
    progress(f"{view.name}: read {batch.rows_read:,} rows from {rows.describe()} in {partitions} key partitions{skipped}")
    if full_because:
        progress(f"{view.name}: read in full: {full_because}")
    found = violations_of(view, batch.duplicates, batch.tallies, batch.newest_event_us, until_us,
                          checked_freshness=watermark is None or batch.rows_read > 0)
    for v in found:
        progress(f"{view.name}: expectation broken: {v.describe()}")
    data_broken = [v for v in found if not v.expectation.startswith("an event within")]
    report = functools.partial(MaterializeReport, view.name, table, watermark, until_us, batch.rows_read, batch.keys)
    try:
        if data_broken and view.on_violation == "quarantine":
            progress(f"{view.name}: batch quarantined: nothing written, the watermark stays (fix the source and rerun)")
            return report(0, batch.no_event_time, full_because, tuple(found), True)
        written = _write(batch.chosen, view, table, store_factory)
    finally:
        batch.chosen.unpersist()
    store.set_watermark(table, until_us)
    progress(f"{view.name}: {batch.keys:,} keys, {written:,} written by the executors (older rows kept out)")
    return report(written, batch.no_event_time, full_because, tuple(found))


def _write(chosen: Any, view: FeatureView, table: str, store_factory: Callable[[], OnlineStore]) -> int:
    """Each executor writes its partitions' rows to the store it opens; the counts come back."""
    from pyspark.sql.types import LongType, StructField, StructType

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        store = store_factory()
        try:
            for batch in batches:
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                written = store.write(table, stored(frame, view))
                yield pa.record_batch({"written": pa.array([written], pa.int64())})
        finally:
            store.close()

    counts = chosen.mapInArrow(carried_iter(write), StructType([StructField("written", LongType())]))
    with driver_errors():
        total = counts.groupBy().sum("written").collect()[0][0]
    return int(total or 0)
