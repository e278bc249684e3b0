"""The online store: latest value rows per (table, entity key), written monotonically; and per
window view an index of events with exact prefix states and window sets (the ``window_*`` methods)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

# One stored row: event µs, created µs, the feature values in storage form (parity.semantics.values).
StoredRow = tuple[int, int, tuple[object, ...]]


# One event of a window view's index: key, event µs, created µs (None: none), ingestion order,
# visible-at µs, the bitmask of the view's aggregates it feeds, the declared columns' values, the
# exact prefix state of the key's events up to it (``semantics.window_state``), and a store handle.
WindowEvent = tuple[tuple[object, ...], int, int | None, int, int, int, tuple[object, ...], bytes | None, object]
NO_CREATED = -(2**63)  # how a missing created time sorts: before any (as Polars sorts nulls)

# A member of a window set (``semantics.window_sets``): key, slot, the event's place (event µs,
# created key, sequence), its value in storage form.
SetMember = tuple[tuple[object, ...], int, tuple[int, int, int], object]
# What to read of one set: slot, mode, bound, n (for last_n). Modes "first", "last", "last_n", "count",
# "all" read the members with event time > bound (None: all members); "at" the last member with event
# time ≤ bound (None: the last one) — a histogram checkpoint (``semantics.window_histograms``).
SetAsk = tuple[int, str, int | None, int]


def empty_set_answer(mode: str) -> object:
    """What a set read gives when the key has no members in the window."""
    return 0 if mode == "count" else [] if mode in ("last_n", "all") else None


def window_position(event: WindowEvent) -> tuple[int, int, int]:
    """An event's place among its key's events: ``ordering.ROW_ORDER``."""
    return (event[1], NO_CREATED if event[2] is None else event[2], event[3])


class OnlineStore(Protocol):
    #: Whether a read can wait on something outside the process (a network round trip, a lock).
    #: Reads that cannot (a local SQLite file in WAL mode) run inline; the others off the event loop.
    reads_may_block: bool

    def ensure_table(self, table: str) -> None: ...

    def write(self, table: str, rows: Iterable[tuple[tuple[object, ...], StoredRow]]) -> int:
        """Write (key, row) pairs; a row older than the held one (``semantics.ordering``) is skipped.
        Returns how many rows were written. All or nothing."""
        ...

    def read(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[StoredRow | None]: ...

    # A store that cannot index every instant parity stores may say which it can:
    #     time_range_us = (lowest µs, highest µs, "what holds them, for the reason")
    # (stream events with event or created times outside it are refused at ingest).
    # A store whose reads wait on the network may also offer
    #     async def aread(self, table, keys) -> list[StoredRow | None]
    # answering exactly what ``read`` answers without blocking the event loop (``online.engine``
    # awaits it when the query runs on a loop: the server's workers).

    def get_watermark(self, table: str) -> int | None: ...

    def read_synced(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[int | None]:
        """When each key's value was last known current: the later of the table's watermark and
        the key's own mark (set when it was looked up at request time). None: never."""
        ...

    def mark_synced(self, table: str, keys: Sequence[tuple[object, ...]], micros: int) -> None: ...

    def set_watermark(self, table: str, micros: int) -> None: ...

    def window_replace(self, table: str, parts: Iterable[tuple[Iterable[WindowEvent], Iterable[SetMember]]]) -> int:
        """Replace a window index, all or nothing, with ``parts``: each its events and its sets'
        members, over keys no other part holds (a rebuild in key partitions: one part in memory at
        a time); returns how many events it holds. A part's events are consumed before its members
        (a rebuild makes histogram checkpoints as it states the events)."""
        ...

    def window_write(self, table: str, events: Sequence[WindowEvent], replaced: Sequence[WindowEvent],
                     max_visible: dict[tuple[object, ...], int], added: Sequence[SetMember] = (),
                     removed: Sequence[SetMember] = ()) -> None:
        """Add events, replacing ``replaced`` (rows read before, now re-stated with new prefixes),
        raise each key's latest visibility instant, and change the sets; all or nothing."""
        ...

    def window_sets(self, table: str, keys: Sequence[tuple[object, ...]], slots: Sequence[int],
                    after_us: int | None = None) -> list[dict[int, list[tuple[tuple[int, int, int], object]]]]:
        """Per key, each slot's members in row order (what a writer holds); only those with event
        time > ``after_us`` when given."""
        ...

    def window_read(self, table: str, keys: Sequence[tuple[object, ...]], after_us: int | None,
                    until_us: int | None) -> list[list[WindowEvent]]:
        """Per key, its events with after < event time ≤ until (None: no bound), in row order."""
        ...

    def window_last(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[WindowEvent | None]:
        """Per key, its last event in row order (None: none)."""
        ...

    def window_seek(self, table: str, keys: Sequence[tuple[object, ...]], times: Sequence[int | None],
                    asks: Sequence[SetAsk] = ()) -> list[tuple[int | None, list[bytes | None], list[object]]]:
        """Per key, in one snapshot: its latest visibility instant (None: no events); for each time
        the prefix state of its last event with event time ≤ that time (None: no such event, or
        time None); and per ask, from its window sets, the first or last member's value after
        the bound (None: none), the last n values (latest first), their count, all of them, or
        the last member's value at or before the bound.
        Each is one B-tree or skip-list descent, then the members returned (a SQLite count walks
        its index range)."""
        ...

    def close(self) -> None: ...
