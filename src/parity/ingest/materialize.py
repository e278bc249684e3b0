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

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl

from parity.define.features import FeatureView
from parity.define.sources import Source
from parity.define.windows import WindowView
from parity.ingest.window_index import rebuild
from parity.ports.online_store import OnlineStore, StoredRow
from parity.ports.source import SourceReader, view_scan, window_scan
from parity.semantics import asof, expectations, values, visibility, windows
from parity.semantics.expectations import Violation
from parity.semantics.ordering import CREATED, EVENT
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


def materialize_view(
    view: FeatureView,
    table: str,
    reader: SourceReader,
    store: OnlineStore,
    *,
    until_us: int,
    incremental: bool,
    progress: Progress,
) -> MaterializeReport:
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
    keys = list(view.entity.keys)
    scan = reader.scan(view_scan(view, window=Window(after_us=watermark, until_us=until_us)))
    if watermark is not None and scan.rows[CREATED].null_count():
        full_because = (f"{scan.rows[CREATED].null_count():,} rows have no created time, so when they arrived is "
                        f"unknown")
        watermark = None
        scan = reader.scan(view_scan(view, window=Window(until_us=until_us)))
    rows = scan.rows
    skipped = f"; {scan.no_event_time:,} rows without an event time skipped (never visible)" if scan.no_event_time else ""
    progress(f"{view.name}: read {rows.height:,} rows from {reader.describe()}{skipped}")
    if full_because:
        progress(f"{view.name}: read in full: {full_because}")
    chosen = asof.latest(rows, keys, uses_created=visibility.uses_created(view.source), t_us=until_us)
    storage = chosen.select(
        *(pl.col(k).cast(values.storage_polars_type(d)) for k, d in view.entity.keys.items()),
        pl.col(EVENT),
        pl.col(CREATED),
        *(pl.col(f.name).cast(values.storage_polars_type(f.dtype)) for f in view.features),
    )
    violations = _violations(view, rows, chosen, keys, until_us, checked_freshness=watermark is None or rows.height > 0)
    for v in violations:
        progress(f"{view.name}: expectation broken: {v.describe()}")
    data_broken = [v for v in violations if not v.expectation.startswith("an event within")]
    if data_broken and view.on_violation == "quarantine":  # stale data is still the best there is: warned only
        progress(f"{view.name}: batch quarantined: nothing written, the watermark stays (fix the source and rerun)")
        return MaterializeReport(view.name, table, watermark, until_us, rows.height, storage.height, 0,
                                 scan.no_event_time, full_because, tuple(violations), True)
    written = store.write(table, _rows(storage, keys, [f.name for f in view.features]))
    store.set_watermark(table, until_us)
    progress(f"{view.name}: {storage.height:,} keys, {written:,} written (older rows kept out)")
    return MaterializeReport(view.name, table, watermark, until_us, rows.height, storage.height, written,
                             scan.no_event_time, full_because, tuple(violations))


def _violations(view: FeatureView, rows: pl.DataFrame, chosen: pl.DataFrame, keys: list[str], until_us: int, *,
                checked_freshness: bool) -> list[Violation]:
    """What the batch breaks: the view's rows for uniqueness, the values about to be served for
    the features' expectations, the newest event for freshness (when this run read the view whole
    or found new rows: an incremental run with nothing new says nothing about it)."""
    found = expectations.check_view_rows(rows, view, keys)
    for f in view.features:
        if f.expect:
            found += expectations.check_values(chosen[f.name], f.expect, f"feature {view.entity.name}.{f.name}")
    if checked_freshness:
        newest = rows[EVENT].max() if rows.height else None
        found += expectations.check_freshness(view, None if newest is None else int(newest), until_us)  # type: ignore[arg-type]
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
) -> list[MaterializeReport]:
    return [
        materialize_view(v, table_of[v.name], reader_for(v.source), store, until_us=until_us,
                         incremental=incremental, progress=progress)
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
                            until_us: int, progress: Progress) -> WindowReport:
    """Rebuild a window view's index from the events its source holds, visible at ``until_us``."""
    scan = reader.scan(window_scan(view, window=Window(until_us=until_us)))
    events = windows.sorted_events(scan.rows, list(view.entity.keys), uses_created=visibility.uses_created(view.source))
    held = rebuild(view, table, store, events)
    store.set_watermark(table, until_us)  # the index holds every event visible at until (skew reads it)
    progress(f"{view.name}: {held:,} events indexed for windows")
    return WindowReport(view.name, table, until_us, held, scan.no_event_time)
