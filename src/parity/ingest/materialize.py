"""Materialization: load the as-of value of every key at a cutoff into the online store.

The row chosen per key is the one ``semantics.asof`` chooses for a probe at the cutoff — the same
rule that builds training sets. The store's monotonic writes keep the newer of old and new.

Incremental runs read only rows that became visible after the stored watermark — which is safe
only where a row's visibility instant is when it *arrived*: sources with a created time that takes
part in visibility (``as_of="visible"``). Elsewhere a row written today may carry an event time
from last week (a back-dated correction, a late file), which a watermark on event time would skip
for good; so those sources are read in full on every run, and the report says why. The same holds
for rows whose created time is null (it counts as the event time, so when they arrived is
unknown): incremental reads take them whatever their time (``visibility.Window``), and one that
meets any becomes a full read. (Writing only those rows would not do: one could tie in (event,
created) with the key's stored value, and the store lets the later write win a tie.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl

from parity.define.features import FeatureView
from parity.define.sources import Source
from parity.define.windows import WindowView
from parity.ingest.window_index import rebuild
from parity.ports.online_store import OnlineStore, StoredRow
from parity.ports.source import Scan, ScanRequest, SourceReader, view_scan, window_scan
from parity.semantics import asof, expectations, values, visibility, windows
from parity.semantics import partitions as partitions_rule
from parity.semantics.expectations import Violation
from parity.semantics.ordering import CREATED, EVENT
from parity.semantics.partitions import Partition
from parity.semantics.visibility import Window

Progress = Callable[[str], None]


@dataclass(frozen=True)
class MaterializeReport:
    view: str
    table: str
    incremental_from_us: int | None
    until_us: int
    rows_read: int
    keys: int
    written: int
    no_event_time: int = 0  # rows skipped: no event time, never visible
    full_because: str | None = None  # why an incremental run read everything
    violations: tuple[Violation, ...] = ()  # expectations the batch broke (define.expectations)
    quarantined: bool = False  # the view asked for quarantine: nothing of this batch was written


def incremental_safe(source: Source) -> bool:
    """Whether a watermark on visibility time finds every row that arrived since the last run."""
    return visibility.uses_created(source)


def _rows(frame: pl.DataFrame, key_names: list[str], feature_names: list[str]) -> Iterator[tuple[tuple[object, ...], StoredRow]]:
    keys = [frame[k].to_list() for k in key_names]
    feats = [frame[f].to_list() for f in feature_names]
    evs = frame[EVENT].to_list()
    crs = frame[CREATED].to_list()
    for i in range(frame.height):
        yield tuple(k[i] for k in keys), (evs[i], crs[i], tuple(f[i] for f in feats))


@dataclass
class _Batch:
    """What one read of a view gives, merged over its key partitions: each key's chosen row, and
    what the expectations need of the rows read (per-partition counts add up: a key's rows are
    all in one partition)."""

    chosen: pl.DataFrame
    rows_read: int
    no_event_time: int
    null_created: int
    newest_event_us: int | None
    duplicates: list[Violation]


def _scans(name: str, reader: SourceReader, request: ScanRequest, partitions: int, progress: Progress,
           unit: str) -> Iterator[Scan]:
    """The scans of ``request``, one key partition at a time (whole when 1), each reported once
    its rows are used."""
    for index in range(partitions_rule.checked_count(partitions)):
        part = None if partitions == 1 else Partition(partitions, index)
        scan = reader.scan(dataclasses.replace(request, partition=part))
        yield scan
        if part is not None:
            progress(f"{name}: partition {index + 1}/{partitions}: {scan.rows.height:,} {unit}")


def _read(view: FeatureView, reader: SourceReader, window: Window, until_us: int, partitions: int,
          progress: Progress) -> _Batch:
    keys = list(view.entity.keys)
    chosen, duplicates = [], []
    rows_read = no_event = null_created = 0
    newest: int | None = None
    for scan in _scans(view.name, reader, view_scan(view, window=window), partitions, progress, "rows"):
        rows = scan.rows
        rows_read += rows.height
        no_event += scan.no_event_time
        null_created += rows[CREATED].null_count()
        if rows.height:
            top = int(rows[EVENT].max())  # type: ignore[arg-type]
            newest = top if newest is None else max(newest, top)
        duplicates += expectations.check_view_rows(rows, view, keys)
        chosen.append(asof.latest(rows, keys, uses_created=visibility.uses_created(view.source), t_us=until_us))
    # every row read was checked for uniqueness, in the partitions that broke nothing too
    duplicates = [dataclasses.replace(v, checked=rows_read) for v in _merged(duplicates)]
    return _Batch(pl.concat(chosen), rows_read, no_event, null_created, newest, duplicates)


def _merged(found: list[Violation]) -> list[Violation]:
    """Partitions' violations of one expectation as one: the rows that broke it summed, the least
    example kept (``semantics.expectations``)."""
    merged: dict[tuple[str, str], Violation] = {}
    for v in found:
        held = merged.get((v.where, v.expectation))
        if held is None:
            merged[(v.where, v.expectation)] = v
            continue
        keep = held if held.rank <= v.rank else v  # the least example, however the rows were split
        merged[(v.where, v.expectation)] = dataclasses.replace(keep, bad=held.bad + v.bad)
    return list(merged.values())


def start(view: FeatureView, table: str, store: OnlineStore, *, until_us: int, incremental: bool,
          progress: Progress, partitions: int) -> tuple[int | None, str | None] | MaterializeReport:
    """Where a run starts: (the watermark to read after, why it reads in full), or the report of
    a run with nothing to do. A partition count below 1 is refused."""
    partitions_rule.checked_count(partitions)
    full_because = None
    if incremental and not incremental_safe(view.source):
        full_because = ("the source has no created time" if view.source.created_time is None
                        else "the source uses event-time visibility (as_of='event_time')")
        full_because += ", so rows that arrive late with older event times can only be found by reading it all"
        incremental = False
    watermark = store.get_watermark(table) if incremental else None
    if watermark is not None and watermark >= until_us:
        progress(f"{view.name}: already materialized up to the cutoff")
        return MaterializeReport(view.name, table, watermark, until_us, 0, 0, 0)
    return watermark, full_because


def storage_rows(view: FeatureView, chosen: pl.DataFrame) -> pl.DataFrame:
    """Each key's chosen row as the online store holds it (keys, event, created, features)."""
    return chosen.select(
        *(pl.col(k).cast(values.storage_polars_type(d)) for k, d in view.entity.keys.items()),
        pl.col(EVENT),
        pl.col(CREATED),
        *(pl.col(f.name).cast(values.storage_polars_type(f.dtype)) for f in view.features),
    )


def stored(frame: pl.DataFrame, view: FeatureView) -> Iterator[tuple[tuple[object, ...], StoredRow]]:
    return _rows(frame, list(view.entity.keys), [f.name for f in view.features])


def materialize_view(
    view: FeatureView,
    table: str,
    reader: SourceReader,
    store: OnlineStore,
    *,
    until_us: int,
    incremental: bool,
    progress: Progress,
    partitions: int = 1,
) -> MaterializeReport:
    """``partitions`` > 1 reads the source one key partition at a time (``semantics.partitions``):
    at most one partition of its rows is in memory, with every key's chosen row."""
    started = start(view, table, store, until_us=until_us, incremental=incremental, progress=progress,
                    partitions=partitions)
    if isinstance(started, MaterializeReport):
        return started
    watermark, full_because = started
    batch = _read(view, reader, Window(after_us=watermark, until_us=until_us), until_us, partitions, progress)
    if watermark is not None and batch.null_created:
        full_because = f"{batch.null_created:,} rows have no created time, so when they arrived is unknown"
        watermark = None
        batch = _read(view, reader, Window(until_us=until_us), until_us, partitions, progress)
    skipped = f"; {batch.no_event_time:,} rows without an event time skipped (never visible)" if batch.no_event_time else ""
    progress(f"{view.name}: read {batch.rows_read:,} rows from {reader.describe()}{skipped}")
    if full_because:
        progress(f"{view.name}: read in full: {full_because}")
    storage = storage_rows(view, batch.chosen)
    violations = _violations(view, batch, until_us, checked_freshness=watermark is None or batch.rows_read > 0)
    for v in violations:
        progress(f"{view.name}: expectation broken: {v.describe()}")
    data_broken = [v for v in violations if not v.expectation.startswith("an event within")]
    if data_broken and view.on_violation == "quarantine":  # stale data is still the best there is: warned only
        progress(f"{view.name}: batch quarantined: nothing written, the watermark stays (fix the source and rerun)")
        return MaterializeReport(view.name, table, watermark, until_us, batch.rows_read, storage.height, 0,
                                 batch.no_event_time, full_because, tuple(violations), True)
    written = store.write(table, stored(storage, view))
    store.set_watermark(table, until_us)
    progress(f"{view.name}: {storage.height:,} keys, {written:,} written (older rows kept out)")
    return MaterializeReport(view.name, table, watermark, until_us, batch.rows_read, storage.height, written,
                             batch.no_event_time, full_because, tuple(violations))


def value_tallies(view: FeatureView, chosen: pl.DataFrame) -> list[expectations.Tally]:
    """The features' expectations over the values about to be served (a part of them: tallies add up)."""
    return [t for f in view.features if f.expect
            for t in expectations.tally_values(chosen[f.name], f.expect, f"feature {view.entity.name}.{f.name}")]


def _violations(view: FeatureView, batch: _Batch, until_us: int, *, checked_freshness: bool) -> list[Violation]:
    return violations_of(view, batch.duplicates, value_tallies(view, batch.chosen), batch.newest_event_us, until_us,
                         checked_freshness=checked_freshness)


def violations_of(view: FeatureView, duplicates: list[Violation], tallies: list[expectations.Tally],
                  newest_event_us: int | None, until_us: int, *, checked_freshness: bool) -> list[Violation]:
    """What the batch breaks: the view's rows for uniqueness, the values about to be served for
    the features' expectations, the newest event for freshness (when this run read the view whole
    or found new rows: an incremental run with nothing new says nothing about it)."""
    found = list(duplicates) + expectations.violations(expectations.merged(tallies))
    if checked_freshness:
        found += expectations.check_freshness(view, newest_event_us, until_us)
    return found


def materialize(
    views: list[FeatureView],
    table_of: dict[str, str],
    reader_for: Callable[[Source], SourceReader],
    store: OnlineStore,
    *,
    until_us: int,
    incremental: bool,
    progress: Progress,
    partitions: Callable[[FeatureView], int] = lambda view: 1,
) -> list[MaterializeReport]:
    return [
        materialize_view(v, table_of[v.name], reader_for(v.source), store, until_us=until_us,
                         incremental=incremental, progress=progress, partitions=partitions(v))
        for v in views
    ]


@dataclass(frozen=True)
class WindowReport:
    view: str
    table: str
    until_us: int
    events: int
    no_event_time: int = 0


def materialize_window_view(view: WindowView, table: str, reader: SourceReader, store: OnlineStore, *,
                            until_us: int, progress: Progress, partitions: int = 1) -> WindowReport:
    """Rebuild a window view's index from the events its source holds, visible at ``until_us``.
    ``partitions`` > 1 reads the source one key partition at a time (``semantics.partitions``)
    into the one replacement: at most one partition of its events is in memory."""
    request = window_scan(view, window=Window(until_us=until_us))
    scans = _scans(view.name, reader, request, partitions_rule.checked_count(partitions), progress, "events")
    skipped = 0

    def parts() -> Iterator[pl.DataFrame]:
        nonlocal skipped
        for scan in scans:
            skipped += scan.no_event_time
            yield windows.sorted_events(scan.rows, list(view.entity.keys), uses_created=visibility.uses_created(view.source))

    held = rebuild(view, table, store, parts())
    store.set_watermark(table, until_us)  # the index holds every event visible at until (skew reads it)
    progress(f"{view.name}: {held:,} events indexed for windows")
    return WindowReport(view.name, table, until_us, held, skipped)
