"""Reading a source: scans for the offline engine and materialization, point lookups online."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from parity.define.dtypes import DType
from parity.define.features import FeatureView
from parity.define.windows import WindowView
from parity.ports.online_store import StoredRow
from parity.semantics.partitions import Partition
from parity.semantics.visibility import Window


@dataclass(frozen=True)
class ScanRequest:
    """What to read: typed columns, and optionally a window of visibility time (µs).

    The result has the requested columns (renamed to the given names and read as the dtypes by
    ``semantics.reading``; key columns in canonical form, ``semantics.keys``) plus ``ordering.EVENT``
    and ``ordering.CREATED`` (Int64 µs UTC; CREATED null when the source has no created time) and
    ``ordering.SEQUENCE`` (ingestion order).
    """

    columns: Mapping[str, tuple[str, DType]]  # output name -> (source column, dtype)
    keys: tuple[str, ...] = ()  # which outputs are entity keys
    window: Window = field(default_factory=Window)
    where: str = ""  # the feature view asking, for error messages
    # only the rows whose key is in this partition (``semantics.partitions``); None: every row
    partition: Partition | None = None
    # only the rows whose SEQUENCE is among these (sorted); every row is still read and checked, so
    # a value that does not fit is found whichever rows are kept. None: every row
    sequences: pl.Series | None = field(default=None, compare=False)

    @property
    def key_types(self) -> dict[str, DType]:
        """The entity key outputs and their dtypes (what a partition is hashed by)."""
        return {k: self.columns[k][1] for k in self.keys}

    @property
    def key_columns(self) -> list[str]:
        return [self.columns[k][0] for k in self.keys]


def view_scan(view: FeatureView, features: Iterable[str] | None = None, window: Window | None = None) -> ScanRequest:
    """The scan of ``view`` for ``features`` (default: all of them): its keys, then the features."""
    wanted = None if features is None else set(features)
    return ScanRequest(
        columns={
            **{k: (view.source_key(k), d) for k, d in view.entity.keys.items()},
            **{f.name: (f.source_column, f.dtype) for f in view.features if wanted is None or f.name in wanted},
        },
        keys=tuple(view.entity.keys),
        window=window or Window(),
        where=f"feature view {view.name!r}",
    )


def window_scan(view: WindowView, columns: Iterable[str] | None = None, window: Window | None = None) -> ScanRequest:
    """The scan of a window view's events: its keys, then the declared columns asked for."""
    wanted = None if columns is None else set(columns)
    return ScanRequest(
        columns={
            **{k: (view.source_key(k), d) for k, d in view.entity.keys.items()},
            **{c: (c, d) for c, d in view.columns.items() if wanted is None or c in wanted},
        },
        keys=tuple(view.entity.keys),
        window=window or Window(),
        where=f"window view {view.name!r}",
    )


@dataclass(frozen=True)
class Scan:
    """A scan's rows, and how many rows it skipped because their event time is null (never visible)."""

    rows: pl.DataFrame
    no_event_time: int = 0


class SourceReader(Protocol):
    """Reads one source. A reader whose scans of one request give the same rows with the same
    SEQUENCE every time while nothing writes it says so with ``repeatable_scans = True``, and
    gives a ``snapshot()`` that changes when the source is written: the partitioned engine may
    then find rows in one scan and fetch their values in another, and refuse if it was written."""

    def scan(self, request: ScanRequest) -> Scan: ...

    def describe(self) -> str: ...

    def check(self, request: ScanRequest) -> None:
        """Check that the source has the requested columns in types their dtypes can read (no rows read)."""
        ...


class RepeatableReader(SourceReader, Protocol):
    """A reader with ``repeatable_scans = True`` (see ``SourceReader``)."""

    repeatable_scans: bool

    def snapshot(self) -> object:
        """What the source is now: equal snapshots frame scans of the same rows."""
        ...

    def scan_partitions(self, request: ScanRequest, count: int, folder: str) -> list[Callable[[], Scan]]:
        """The scans of ``request``'s ``count`` key partitions, split in one read of the source
        through files in ``folder`` (a read that grows with the rows, not rows × partitions)."""
        ...


class PointLookupReader(SourceReader, Protocol):
    """A source that can answer "the as-of row of these keys at t" itself (a database).

    ``lookup`` returns, per key found (canonical storage form), the chosen row as the online store
    holds it: (event µs, created µs, values of the request's non-key columns in order).
    """

    supports_point_lookup: bool

    async def lookup(
        self, request: ScanRequest, keys: Sequence[tuple[object, ...]], t_us: int
    ) -> dict[tuple[object, ...], StoredRow]: ...

    async def aclose(self) -> None: ...
