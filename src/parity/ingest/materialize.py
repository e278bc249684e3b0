"""Materialization: load the as-of value of every key at a cutoff into the online store.

The row chosen per key is the one ``semantics.asof`` chooses for a probe at the cutoff — the same
function that builds training sets. Incremental runs read only rows that became visible after the
stored watermark; the store's monotonic writes keep the newer of old and new.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl

from parity.define.features import FeatureView
from parity.define.sources import Source
from parity.ports.online_store import OnlineStore, StoredRow
from parity.ports.source import ScanRequest, SourceReader
from parity.semantics import asof, values
from parity.semantics.ordering import CREATED, EVENT

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
    watermark = store.get_watermark(table) if incremental else None
    if watermark is not None and watermark >= until_us:
        progress(f"{view.name}: already materialized up to the cutoff")
        return MaterializeReport(view.name, table, watermark, until_us, 0, 0, 0)
    keys = list(view.entity.keys)
    request = ScanRequest(
        columns={
            **{k: (view.source_key(k), d) for k, d in view.entity.keys.items()},
            **{f.name: (f.source_column, f.dtype) for f in view.features},
        },
        visible_after_us=watermark,
        visible_until_us=until_us,
        where=f"feature view {view.name!r}",
    )
    rows = reader.scan(request)
    progress(f"{view.name}: read {rows.height:,} rows from {reader.describe()}")
    chosen = asof.latest(rows, keys, uses_created=asof.uses_created(view.source), t_us=until_us)
    storage = chosen.select(
        *(pl.col(k).cast(values.storage_polars_type(d)) for k, d in view.entity.keys.items()),
        pl.col(EVENT),
        pl.col(CREATED),
        *(pl.col(f.name).cast(values.storage_polars_type(f.dtype)) for f in view.features),
    )
    written = store.write(table, _rows(storage, keys, [f.name for f in view.features]))
    store.set_watermark(table, until_us)
    progress(f"{view.name}: {storage.height:,} keys, {written:,} written (older rows kept out)")
    return MaterializeReport(view.name, table, watermark, until_us, rows.height, storage.height, written)


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
