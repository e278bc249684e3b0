"""The event log of a stream source, as the ingest engine sees it (``connectors.event_log``)."""

from __future__ import annotations

from typing import Protocol

import polars as pl

from parity.ports.source import Scan, ScanRequest


class LogState(Protocol):
    last_seq: int
    positions: dict[str, int]
    watermark_us: int | None
    last_ingested_us: int | None


class EventLog(Protocol):
    def open_writer(self) -> None: ...

    def close(self) -> None: ...

    def state(self) -> LogState: ...

    def read(self, after_seq: int = 0, columns: list[str] | None = None) -> pl.DataFrame: ...

    def ids_since(self, ingested_after_us: int) -> set[object]: ...

    def as_scan(self, rows: pl.LazyFrame, request: ScanRequest) -> Scan:
        """Log rows read as a scan of the source reads them (the offline path's normalization)."""
        ...

    def append(self, events: pl.DataFrame, positions: dict[str, int], watermark_us: int | None,
               ingested_us: int) -> tuple[int, int]:
        """Durably append one commit of events (all or nothing)."""
        ...

    def checkpoint(self, positions: dict[str, int], watermark_us: int | None, ingested_us: int) -> None:
        """Durably record a new transport position for a commit that added no events."""
        ...

    def compact(self) -> None:
        """Merge segments (the writer calls it after a commit is applied); crash-safe, and what it
        leaves is read as the same log."""
        ...


class DeadLetters(Protocol):
    def __call__(self, letters: list[dict[str, object]]) -> None:
        """Durably record rejected events with their reasons."""
        ...
