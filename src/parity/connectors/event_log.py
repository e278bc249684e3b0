"""The event log of a stream source: append-only Parquet segments in the project folder.

``<root>/.parity/events/<source>/seg-<first>-<last>.parquet`` holds the accepted events of one
commit, numbered by log sequence (contiguous from 1), with the commit's stamp (``INGESTED_AT``:
their created time, taken as the commit begins; online they are served once it is applied). A
segment is written to a temporary file, fsynced and renamed into place, and the folder is fsynced:
a segment is in the log entirely or not at all, and the rename is the commit. Each segment's
metadata records the transport position it brings the consumer to (a NATS stream sequence) and
the newest event time seen, so a consumer resumes exactly where the log ends. Compaction merges small segments into one covering their whole range; readers ignore any
segment inside another's range, so a crash between writing the merge and removing its parts
changes nothing, and the parts are removed only RETIRE_AFTER_SECONDS later, so a reader in another
process never loses a file it has listed. Merging is size-tiered (``EventLog.compact``).

The log is the offline source of the stream's features (``EventLogReader``): training sets read the
events serving saw, each with the time it became servable.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import polars as pl
import pyarrow.parquet as pq

from parity.connectors.frames import check_columns, normalize
from parity.define.sources import INGESTED_AT, LOG_SEQUENCE, StreamSource
from parity.errors import StoreError, WriterBusy
from parity.ports.source import Scan, ScanRequest
from parity.semantics import values
from parity.semantics.ordering import SEQUENCE
from parity.semantics.time import now_micros

_SEGMENT = re.compile(r"^seg-(\d{20})-(\d{20})\.parquet$")
FAN_IN = 8  # segments of one size tier merged into one: each event is rewritten O(log n) times
# A merged segment's parts stay on disk this long: a reader in another process (a training set
# while the stream runs) that listed the folder before the merge still finds every file it lists.
RETIRE_AFTER_SECONDS = 300.0


def log_dir(root: str, source: str) -> str:
    return os.path.join(root, ".parity", "events", source)


def log_schema(source: StreamSource) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {c: values.polars_type(d) for c, d in source.schema.items()}
    schema[INGESTED_AT] = pl.Datetime("us", "UTC")
    schema[LOG_SEQUENCE] = pl.Int64()
    return schema


@dataclass
class LogState:
    """Where the log ends: its last sequence, the transport position and newest event time it holds."""

    last_seq: int = 0
    positions: dict[str, int] = field(default_factory=dict)
    watermark_us: int | None = None
    last_ingested_us: int | None = None


def live_segments(directory: str) -> list[tuple[int, int, str]]:
    """(first, last, path) of a log folder's live segments, in log order: a segment inside
    another's range is a merge's part, kept a while for readers (RETIRE_AFTER_SECONDS)."""
    return _live(_all_segments(directory))


def _live(found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    live: list[tuple[int, int, str]] = []
    for first, last, path in found:
        if live and last <= live[-1][1]:
            continue  # inside a merged segment that already covers it
        live.append((first, last, path))
    return live


def _all_segments(directory: str) -> list[tuple[int, int, str]]:
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        m = _SEGMENT.match(name)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), os.path.join(directory, name)))
    found.sort(key=lambda s: (s[0], -s[1]))
    return found


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventLog:
    """One source's log. ``open_writer`` takes an exclusive lock: one writer per source."""

    def __init__(self, source: StreamSource, root: str) -> None:
        self.source = source
        self.dir = log_dir(root, source.name)
        self._lock: IO[str] | None = None

    # -- reading --------------------------------------------------------------------------------

    def segments(self) -> list[tuple[int, int, str]]:
        """(first, last, path) of the live segments, in log order (merged parts left out)."""
        return live_segments(self.dir)

    def state(self) -> LogState:
        live = self.segments()
        state = LogState()
        if live:
            meta = pq.read_metadata(live[-1][2]).metadata or {}
            state = LogState(
                last_seq=live[-1][1],
                positions=json.loads(meta.get(b"parity.positions", b"{}")),
                watermark_us=json.loads(meta.get(b"parity.watermark", b"null")),
                last_ingested_us=json.loads(meta.get(b"parity.ingested_at", b"null")),
            )
        # A checkpoint after the last segment (commits that added no events) moves the position on.
        path = os.path.join(self.dir, "checkpoint.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                mark = json.load(handle)
            if mark.get("last_seq") == state.last_seq:
                state.positions = mark["positions"]
                state.watermark_us = mark["watermark"]
                state.last_ingested_us = mark["ingested_at"]
        return state

    def checkpoint(self, positions: dict[str, int], watermark_us: int | None, ingested_us: int) -> None:
        last = self.segments()[-1][1] if self.segments() else 0
        tmp = os.path.join(self.dir, ".checkpoint.json.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"last_seq": last, "positions": positions, "watermark": watermark_us, "ingested_at": ingested_us},
                      handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, os.path.join(self.dir, "checkpoint.json"))
        _fsync_dir(self.dir)

    def read(self, after_seq: int = 0, columns: list[str] | None = None) -> pl.DataFrame:
        """The events with log sequence > ``after_seq``, in log order."""
        paths = [p for first, last, p in self.segments() if last > after_seq]
        schema = log_schema(self.source)
        if not paths:
            return pl.DataFrame(schema=schema).select(columns or list(schema))
        frame = pl.scan_parquet(paths).filter(pl.col(LOG_SEQUENCE) > after_seq)
        return frame.select(columns or list(schema)).collect()

    def ids_since(self, ingested_after_us: int) -> set[object]:
        """Event ids (in storage form, as the ingestor compares them) of the events committed after
        ``ingested_after_us`` (the dedup horizon)."""
        id_column = self.source.event_id
        frame = self.read(columns=[id_column, INGESTED_AT])
        cutoff = pl.lit(ingested_after_us).cast(pl.Datetime("us", "UTC"))
        ids = frame.filter(pl.col(INGESTED_AT) > cutoff)[id_column]
        return set(ids.cast(values.storage_polars_type(self.source.schema[id_column])).to_list())

    def as_scan(self, rows: pl.LazyFrame, request: ScanRequest) -> Scan:
        return normalize(rows.with_columns(pl.col(LOG_SEQUENCE).alias(SEQUENCE)), self.source, request,
                         f"stream source {self.source.name!r}")

    # -- writing --------------------------------------------------------------------------------

    def open_writer(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        # "a": a process that fails to take the lock must not empty the holder's pid out of the file
        lock = open(os.path.join(self.dir, ".writer.lock"), "a")  # noqa: SIM115 - held for the writer's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise WriterBusy(f"stream source {self.source.name!r}: another process is writing its event log "
                             f"({self.dir}); run one consumer or pusher per source") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        # Only the writer writes temporary files: these are a killed writer's unfinished segments.
        stale = [n for n in os.listdir(self.dir) if n.endswith(".tmp")]
        for name in stale:
            os.remove(os.path.join(self.dir, name))
        self._retire()

    def _retire(self, found: list[tuple[int, int, str]] | None = None) -> None:
        """Remove the parts of merges older than RETIRE_AFTER_SECONDS (readers already ignore
        them): those of this writer's merges, and those a writer killed mid-merge left behind.
        ``found``: the folder's segments, when the caller has just listed them."""
        found = _all_segments(self.dir) if found is None else found
        live = _live(found)
        live_paths = {path for _, _, path in live}
        retired = [seg for seg in found if seg[2] not in live_paths]
        cutoff = time.time() - RETIRE_AFTER_SECONDS
        removed = 0
        for first, last, path in retired:
            cover = next(p for f, la, p in live if f <= first and last <= la)
            if os.stat(cover).st_mtime < cutoff:
                os.remove(path)
                removed += 1
        if removed:
            _fsync_dir(self.dir)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def append(self, events: pl.DataFrame, positions: dict[str, int], watermark_us: int | None,
               ingested_us: int) -> tuple[int, int]:
        """Durably append events that already carry LOG_SEQUENCE and INGESTED_AT (one commit)."""
        if self._lock is None:
            raise StoreError(f"stream source {self.source.name!r}: the event log is not open for writing")
        first, last = int(events[LOG_SEQUENCE][0]), int(events[LOG_SEQUENCE][-1])
        self._write(events, first, last, positions, watermark_us, ingested_us)
        return first, last

    def _write(self, events: pl.DataFrame, first: int, last: int, positions: dict[str, int],
               watermark_us: int | None, ingested_us: int | None) -> None:
        table = events.to_arrow()
        table = table.replace_schema_metadata({
            "parity.positions": json.dumps(positions),
            "parity.watermark": json.dumps(watermark_us),
            "parity.ingested_at": json.dumps(ingested_us),
        })
        name = f"seg-{first:020d}-{last:020d}.parquet"
        tmp = os.path.join(self.dir, f".{name}.tmp")
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, os.path.join(self.dir, name))
        _fsync_dir(self.dir)

    def compact(self) -> None:
        """Size-tiered merging, as an LSM tree does, on the log's contiguous segments. A segment's
        tier is k for FAN_IN^k ≤ rows < FAN_IN^(k+1); two rules keep the tiers non-increasing
        from the oldest segment to the newest with fewer than FAN_IN of each, so a log of n events
        keeps O(FAN_IN · log n) segments and rewrites each event O(log n) times — small commits
        (pushes at a low rate) never rewrite the whole log:

        1. a new segment of a higher tier than the ones before it merges with them (its own rows
           pay for the rewrite: the smaller ones hold fewer than FAN_IN times its tier's floor);
        2. FAN_IN segments of one tier at the end merge into one of the next tier.

        Crash-safe: see the module's doc."""
        while True:
            found = _all_segments(self.dir)
            live = _live(found)
            tiers = [_tier(last - first + 1) for first, last, _ in live]
            start = len(live) - 1
            while start > 0 and tiers[start - 1] < tiers[-1]:
                start -= 1
            if start < len(live) - 1:
                self._merge(live[start:])
            elif len(live) >= FAN_IN and len(set(tiers[-FAN_IN:])) == 1:
                self._merge(live[-FAN_IN:])
            else:
                self._retire(found)
                return

    def _merge(self, parts: list[tuple[int, int, str]]) -> None:
        merged = pl.read_parquet([p for _, _, p in parts])
        meta = pq.read_metadata(parts[-1][2]).metadata or {}
        self._write(merged, parts[0][0], parts[-1][1],
                    json.loads(meta.get(b"parity.positions", b"{}")),
                    json.loads(meta.get(b"parity.watermark", b"null")),
                    json.loads(meta.get(b"parity.ingested_at", b"null")))


def _tier(rows: int) -> int:
    tier = 0
    while rows >= FAN_IN:
        rows //= FAN_IN
        tier += 1
    return tier


def dead_letter_path(root: str, source: str) -> str:
    return os.path.join(root, ".parity", "dead", f"{source}.jsonl")


def append_dead_letters(root: str, source: str, letters: list[dict[str, object]]) -> None:
    """Append rejected events with their reasons (JSON lines, fsynced before the batch commits)."""
    if not letters:
        return
    path = dead_letter_path(root, source)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(letter, default=str) + "\n" for letter in letters)
        handle.flush()
        os.fsync(handle.fileno())


def read_dead_letters(root: str, source: str) -> Iterator[dict[str, object]]:
    path = dead_letter_path(root, source)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


class EventLogReader:
    """A stream source read offline: its event log, as any other source."""

    def __init__(self, source: StreamSource, root: str) -> None:
        self.source = source
        self.log = EventLog(source, root)

    def describe(self) -> str:
        return f"stream source {self.source.name!r} (event log {self.log.dir})"

    def _frame(self) -> pl.LazyFrame:
        paths = [p for _, _, p in self.log.segments()]
        if not paths:
            return pl.DataFrame(schema=log_schema(self.source)).lazy()
        return pl.scan_parquet(paths)

    def check(self, request: ScanRequest) -> None:
        check_columns(list(log_schema(self.source)), self.source, request, self.describe())

    def scan(self, request: ScanRequest) -> Scan:
        frame = self._frame()
        check_columns(list(log_schema(self.source)), self.source, request, self.describe())
        return self.log.as_scan(frame, request)



class DeadLetterFile:
    """The dead-letter store of one source (``append_dead_letters``), as the ingest port wants it."""

    def __init__(self, root: str, source: str) -> None:
        self.root = root
        self.source = source

    def __call__(self, letters: list[dict[str, object]]) -> None:
        stamped = [{"recorded_at_us": now_micros(), **letter} for letter in letters]
        append_dead_letters(self.root, self.source, stamped)
