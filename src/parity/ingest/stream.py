"""Stream ingestion: validate events, append them to the event log, keep the online indexes.

One ``StreamIngestor`` is the single writer of one stream source. Each ``ingest`` call is one commit:

1. parse and validate every event against the source's schema (``ingest.events``) — a bad one goes to the dead-letter
   store with its reason (field, value, what was expected) and never stops the consumer;
2. drop duplicates by event id (exactly once: ids already in the log within ``dedup_horizon``, or
   earlier in the same batch, are counted and skipped);
3. dead-letter an event later than ``max_lateness`` behind the newest event time seen (never a
   silent drop), apply every other late event;
4. stamp the batch with its commit time (monotonic) and log sequences and append it to the event
   log — durable and atomic, carrying the transport position: **this is the commit**;
5. apply the batch to the online store — window indexes (``ingest.window_index``) and the latest
   values of feature views on the source — idempotently, recording per table the last log
   sequence applied, so a restart re-applies whatever a crash left out; after a store write that
   failed, the next commit re-applies from the log first (the writers' caches dropped);
6. measure when the events became servable (now: the store holds them), then merge the log's
   segments (``EventLog.compact``): a merge delays the next commit, never the servable time of
   the one it follows.

Events are derived for the online store through the same normalization as an offline scan of the
log (``ports.source``: event/created times, sequence), so both paths see one event the same way.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from parity.define.features import FeatureView
from parity.define.sources import INGESTED_AT, LOG_SEQUENCE, StreamSource
from parity.define.windows import WindowView
from parity.ingest.events import BadEvent, EventSchema, parse, text
from parity.ingest.window_index import WindowWriter, index_events, rebuild
from parity.ports.event_log import DeadLetters, EventLog
from parity.ports.online_store import OnlineStore
from parity.ports.source import view_scan, window_scan
from parity.ports.stream import Incoming
from parity.semantics import asof, values, visibility, windows
from parity.semantics.ordering import CREATED, EVENT
from parity.semantics.time import now_micros

logger = logging.getLogger("parity.ingest")
DEDUP_HORIZON = dt.timedelta(days=7)
_LAG_SAMPLES = 200_000


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    dead: int = 0
    late_applied: int = 0
    late_dead: int = 0
    warned: int = 0  # accepted events that broke a warn-mode expectation (``StreamSource.on_violation``)
    first_seq: int | None = None
    last_seq: int | None = None
    reasons: list[str] = field(default_factory=list)  # the first few dead-letter reasons
    warnings: list[str] = field(default_factory=list)  # the first few broken warn-mode expectations
    messages: list[MessageReport] | None = None  # per message, when asked (``ingest(itemize=True)``)


@dataclass
class MessageReport:
    """What one message of a commit came to. ``refused``: an atomic message that had a bad or too
    late event — none of its events is logged; ``errors`` are (event index, reason)."""

    accepted: int = 0
    duplicates: int = 0
    dead: int = 0
    late_applied: int = 0
    late_dead: int = 0
    warned: int = 0
    refused: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None


class StreamIngestor:
    """The single writer of one stream source: its log, its dead letters, its online indexes."""

    def __init__(self, source: StreamSource, log: EventLog, dead_letters: DeadLetters, store: OnlineStore,
                 window_views: Sequence[tuple[WindowView, str]], feature_views: Sequence[tuple[FeatureView, str]],
                 *, dedup_horizon: dt.timedelta = DEDUP_HORIZON, clock: Any = now_micros) -> None:
        from zoneinfo import ZoneInfo

        self.source = source
        self.log = log
        self.dead_letters = dead_letters
        self.store = store
        self.window_views = list(window_views)
        self.feature_views = list(feature_views)
        self.clock = clock
        self.zone = ZoneInfo(source.timezone) if source.timezone else None
        self.columns = list(source.schema)
        self.schema = EventSchema(source, self.zone, getattr(store, "time_range_us", None))
        self.lateness_us = None if source.max_lateness is None else int(source.max_lateness / dt.timedelta(microseconds=1))
        self.writers = [WindowWriter(view, table, store) for view, table in self.window_views]
        log.open_writer()
        try:
            self._start(log, dedup_horizon)
        except BaseException:  # the lock goes with the failure, not with the garbage collector
            log.close()
            raise

    def _start(self, log: EventLog, dedup_horizon: dt.timedelta) -> None:
        state = log.state()
        self.last_seq = state.last_seq
        self.positions = dict(state.positions)
        self.watermark_us = state.watermark_us
        self.last_ingested_us = state.last_ingested_us or 0
        self.horizon_us = int(dedup_horizon / dt.timedelta(microseconds=1))
        self.seen: set[object] = log.ids_since(self.clock() - self.horizon_us) if state.last_seq else set()
        self.lags_us: list[int] = []  # event → servable, per accepted event (the newest samples)
        self.broke: dict[str, int] = {}  # warn-mode expectation ('column: expectation') → events since start
        self.commit_lags_us: list[int] = []  # receive → servable, per message
        self._behind = False  # an apply failed after its commit: the next commit recovers first
        self.recovered = self._recover()

    # -- recovery -------------------------------------------------------------------------------

    def _tables(self) -> list[str]:
        return [t for _, t in self.window_views] + [t for _, t in self.feature_views]

    def _recover(self) -> int:
        """Apply to the online store what the log holds beyond what each table has applied."""
        marks = [self.store.get_watermark(f"{t}@log") or 0 for t in self._tables()]
        behind = min(marks, default=self.last_seq)
        if behind >= self.last_seq:
            return 0
        events = self.log.read(after_seq=behind)
        self._apply(events)
        return events.height

    def rebuild(self, view_name: str) -> int:
        """Rebuild one window index from the whole log, as this (the single) writer: a stream-fed
        index holds every logged event whatever the cutoff (each keeps when it became servable)."""
        for (view, table), writer in zip(self.window_views, self.writers):
            if view.name == view_name:
                scan = self.log.as_scan(self.log.read().lazy(), window_scan(view))
                events = windows.sorted_events(scan.rows, list(view.entity.keys),
                                               uses_created=visibility.uses_created(self.source))
                held = rebuild(view, table, self.store, [events])
                writer.forget()
                self.store.set_watermark(f"{table}@log", self.last_seq)
                return held
        raise KeyError(view_name)

    # -- one commit -----------------------------------------------------------------------------

    def ingest(self, messages: Sequence[Incoming], *, itemize: bool = False) -> IngestReport:
        """One commit of ``messages``; ``itemize``: also report per message (``IngestReport.messages``),
        and refuse an atomic message whole when one of its events is refused."""
        report = IngestReport()
        rows: list[list[object]] = []
        letters: list[dict[str, object]] = []
        event_index = self.columns.index(self.source.event_time)
        id_index = self.columns.index(self.source.event_id)
        watermark = self.watermark_us
        # The newest event time seen among events not dated after the clock: one event dated in the
        # future must not make every later event look late.
        horizon = self.clock()
        position = None
        received: list[int] = []
        seen, to_row, lateness = self.seen, self.schema.row, self.lateness_us
        warned_checks = bool(self.schema.warned)
        warned: list[tuple[int, list[str]]] = []  # (row, the warn-mode expectations it broke)
        itemized = report.messages = [] if itemize else None
        for message in messages:
            if message.position is not None:
                position = message.position
            if message.received_us is not None:
                received.append(message.received_us)
            if itemized is not None:
                before = (len(rows), len(letters), report.duplicates, report.late_applied, report.late_dead, watermark)
                warned_before = len(warned)
            for index, (event, problem) in enumerate(parse(message.payload)):
                if problem is None and message.fields:
                    event = {**message.fields, **event}  # type: ignore[dict-item]
                if problem is None:
                    try:
                        row = to_row(event)  # type: ignore[arg-type]
                    except BadEvent as exc:
                        problem = str(exc)
                    except Exception as exc:  # noqa: BLE001 - no event may stop the consumer
                        problem = f"cannot read the event: {type(exc).__name__}: {exc}"
                if problem is not None:
                    letters.append({"reason": problem, "payload": text(event), "position": message.position,
                                    "index": index})
                    continue
                event_id = row[id_index]
                if event_id in seen:
                    report.duplicates += 1
                    continue
                ev: int = row[event_index]  # type: ignore[assignment]
                if watermark is not None and ev < watermark:
                    behind = watermark - ev
                    if lateness is not None and behind > lateness:
                        letters.append({"reason": f"late: event time is {behind / 1e6:g} s behind the newest event "
                                                  f"time seen, past max_lateness ({lateness / 1e6:g} s)",
                                        "payload": text(event), "position": message.position, "index": index})
                        report.late_dead += 1
                        continue
                    report.late_applied += 1
                seen.add(event_id)
                if warned_checks:
                    broken = self.schema.broken(row)
                    if broken:
                        warned.append((len(rows), broken))
                rows.append(row)
                if ev <= horizon and (watermark is None or ev > watermark):
                    watermark = ev
            if itemized is not None:
                if self._itemize(message, itemized, report, rows, letters, before, id_index):
                    watermark = before[5]  # taken back: as if the message had not come
                    del warned[warned_before:]
                else:
                    itemized[-1].warned = len(warned) - warned_before
        report.dead = len(letters)
        report.reasons = [str(letter["reason"]) for letter in letters[:5]]
        self.dead_letters(letters)
        if position is not None:
            self.positions["transport"] = position
        if not rows:
            if position is not None and position != self.positions.get("committed"):
                # Nothing to apply, but the position moved (all duplicates or dead): commit it so a
                # restart does not read these messages again.
                self._commit(pl.DataFrame(schema=self._schema()), watermark)
            return report
        frame = self._frame(rows)
        try:
            self._commit(frame, watermark)
        except BaseException:
            self._resync()  # the log says whether these events are in it, not what this commit hoped
            self._compact()  # a commit that landed in the log before its apply failed is merged all the same
            raise
        # the online store holds the commit: its events are served from now (never before their stamp)
        servable = max(self.clock(), self.last_ingested_us)
        report.accepted = frame.height
        report.first_seq, report.last_seq = self.last_seq - frame.height + 1, self.last_seq
        if warned:
            report.warned = len(warned)
            report.warnings = [f"event {rows[i][id_index]!r}: {'; '.join(broken)}" for i, broken in warned[:5]]
            for _, broken in warned:
                for what in broken:
                    self.broke[what] = self.broke.get(what, 0) + 1
        next_seq = report.first_seq
        for item in itemized or ():  # the accepted rows are in message order
            if item.accepted:
                item.first_seq, item.last_seq = next_seq, next_seq + item.accepted - 1
                next_seq += item.accepted
        evs = np.asarray([r[event_index] for r in rows], np.int64)
        self._sample(self.lags_us, (servable - evs).tolist())
        self._sample(self.commit_lags_us, [servable - r for r in received])
        self._compact()
        return report

    def _compact(self) -> None:
        """Merge the log's segments once a commit is served (``EventLog.compact``): its rewrite of
        older segments is no part of when the commit's events became servable. A merge that fails
        leaves every segment as it was; the next commit tries again."""
        try:
            self.log.compact()
        except Exception:  # the commit stands (its segment is in place)
            logger.warning("stream source %r: compacting the event log failed; retried at the next commit",
                           self.source.name, exc_info=True)

    def _itemize(self, message: Incoming, itemized: list[MessageReport], report: IngestReport,
                 rows: list[list[object]], letters: list[dict[str, object]],
                 before: tuple[int, int, int, int, int, int | None], id_index: int) -> bool:
        """Close one message's report; an atomic message with a refused event is taken back whole
        (its rows, its ids, its dead letters, its counts): True when it was."""
        n_rows, n_letters, dups, late_applied, late_dead, _ = before
        mine = letters[n_letters:]
        item = MessageReport(accepted=len(rows) - n_rows, duplicates=report.duplicates - dups,
                             dead=len(mine), late_applied=report.late_applied - late_applied,
                             late_dead=report.late_dead - late_dead,
                             errors=[(int(letter["index"]), str(letter["reason"])) for letter in mine])  # type: ignore[call-overload]
        itemized.append(item)
        if not (message.atomic and mine):
            return False
        for row in rows[n_rows:]:
            self.seen.discard(row[id_index])
        del rows[n_rows:]
        del letters[n_letters:]
        report.duplicates, report.late_applied, report.late_dead = dups, late_applied, late_dead
        item.refused = True
        item.accepted = item.duplicates = item.dead = item.late_applied = item.late_dead = 0
        return True
    def _resync(self) -> None:
        """After a commit that failed: where the log ends, its position, watermark and ids, read
        again from the log itself — a write that failed may or may not have landed (a rename done,
        the folder's fsync failed), and a retry must be a duplicate exactly when it did. The online
        store re-applies from the log at the next commit."""
        state = self.log.state()
        self.last_seq = state.last_seq
        self.positions = dict(state.positions)
        self.watermark_us = state.watermark_us
        self.last_ingested_us = state.last_ingested_us or 0
        self.seen = self.log.ids_since(self.clock() - self.horizon_us) if state.last_seq else set()
        self._behind = True
        for writer in self.writers:
            writer.forget()

    def _commit(self, frame: pl.DataFrame, watermark: int | None) -> int:
        ingested = max(self.clock(), self.last_ingested_us)
        n = frame.height
        frame = frame.with_columns(
            pl.lit(ingested).cast(pl.Datetime("us", "UTC")).alias(INGESTED_AT),
            pl.int_range(self.last_seq + 1, self.last_seq + 1 + n, dtype=pl.Int64).alias(LOG_SEQUENCE),
        ) if n else frame
        positions = {**self.positions, "committed": self.positions.get("transport", 0)}
        if n:
            self.log.append(frame, positions, watermark, ingested)
            self.last_seq += n
        else:
            self.log.checkpoint(positions, watermark, ingested)
        self.positions["committed"] = self.positions.get("transport", 0)
        self.watermark_us = watermark
        self.last_ingested_us = ingested
        if n:
            self._apply_committed(frame)
        return ingested

    def _apply_committed(self, frame: pl.DataFrame) -> None:
        """Apply a commit; after an apply that failed (a store error), first re-apply from the log
        what the store missed — the writers' caches are dropped, they may hold what never landed."""
        try:
            if self._behind:
                self._recover()  # the log holds this commit too
            else:
                self._apply(frame)
        except BaseException:
            self._behind = True
            for writer in self.writers:
                writer.forget()
            raise
        self._behind = False

    def _apply(self, log_events: pl.DataFrame) -> None:
        """Log rows → online store, through the offline normalization of the log."""
        if not log_events.height:
            return
        last_seq = int(log_events[LOG_SEQUENCE].max())  # type: ignore[arg-type]
        lazy = log_events.lazy()
        for (view, table), writer in zip(self.window_views, self.writers):
            scan = self.log.as_scan(lazy, window_scan(view))
            events = windows.sorted_events(scan.rows, list(view.entity.keys),
                                           uses_created=visibility.uses_created(self.source))
            writer.write(index_events(view, events))
            self.store.set_watermark(f"{table}@log", last_seq)
        for fview, table in self.feature_views:
            scan = self.log.as_scan(lazy, view_scan(fview))
            with_created = visibility.uses_created(self.source)
            until = scan.rows.select(visibility.visible_at_expr(with_created).max()).item()
            chosen = asof.latest(scan.rows, list(fview.entity.keys), uses_created=with_created, t_us=int(until))
            keys = list(fview.entity.keys)
            chosen = chosen.select(*(pl.col(k).cast(values.storage_polars_type(d)) for k, d in fview.entity.keys.items()),
                                   pl.col(EVENT), pl.col(CREATED),
                                   *(pl.col(f.name).cast(values.storage_polars_type(f.dtype)) for f in fview.features))
            store_rows = []
            for row in chosen.iter_rows(named=True):
                store_rows.append((tuple(row[k] for k in keys),
                                   (row[EVENT], row[CREATED] if row[CREATED] is not None else row[EVENT],
                                    tuple(row[f.name] for f in fview.features))))
            self.store.ensure_table(table)
            self.store.write(table, store_rows)
            self.store.set_watermark(f"{table}@log", last_seq)

    # -- log frames --------------------------------------------------------------------------------

    def _schema(self) -> dict[str, pl.DataType]:
        return {c: values.storage_polars_type(d) for c, d in self.source.schema.items()}

    def _frame(self, rows: list[list[object]]) -> pl.DataFrame:
        frame = pl.DataFrame(rows, schema=self._schema(), orient="row")
        return frame.with_columns(pl.col(c).cast(values.polars_type(d)) for c, d in self.source.schema.items())

    @staticmethod
    def _sample(buffer: list[int], new: list[int]) -> None:
        buffer.extend(new)
        if len(buffer) > _LAG_SAMPLES:
            del buffer[: len(buffer) - _LAG_SAMPLES]

    def freshness(self) -> dict[str, object]:
        """Event-to-servable and receive-to-servable lag (p50/p99, ms) over the newest events."""
        def pct(buffer: list[int]) -> dict[str, float] | None:
            if not buffer:
                return None
            arr = np.asarray(buffer, np.float64) / 1000
            return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
                    "samples": float(arr.size)}
        return {"source": self.source.name, "event_to_servable": pct(self.lags_us),
                "receive_to_servable": pct(self.commit_lags_us), "last_seq": self.last_seq,
                "position": self.positions.get("committed"), "expectations_broken": dict(self.broke)}

    def close(self) -> None:
        self.log.close()


