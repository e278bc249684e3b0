"""The online store: latest value rows per (table, entity key), written monotonically."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

# One stored row: event µs, created µs, the feature values in storage form (parity.semantics.values).
StoredRow = tuple[int, int, tuple[object, ...]]


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

    def get_watermark(self, table: str) -> int | None: ...

    def read_synced(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[int | None]:
        """When each key's value was last known current: the later of the table's watermark and
        the key's own mark (set when it was looked up at request time). None: never."""
        ...

    def mark_synced(self, table: str, keys: Sequence[tuple[object, ...]], micros: int) -> None: ...

    def set_watermark(self, table: str, micros: int) -> None: ...

    def close(self) -> None: ...
