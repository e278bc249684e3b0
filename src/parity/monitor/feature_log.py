"""The served-value log: what the online path answered, sampled, written without making anyone wait.

Every sampled query (``Project.query``/``aquery``, so every path of the server too) adds one row per
entity: the request's id, its time (the ``now`` it was answered at), when it was served, the
principal, the entity's keys, and per feature as requested its value, its status and its definition
version (three JSON objects keyed by the feature) — as served: a masked feature is logged masked,
without its value. Keys and values are JSON as ``semantics.wire`` writes them (NaN, infinities,
times and dates included), so the log reads back exactly by each feature's dtype; the replay of a
logged request (train/serve skew) can ask for the same entity, features and time. One JSON text per
entity, not a row per value: the request path pays one serialisation per entity.

The request path only samples (one random draw per query, ``sample_rate``) and appends to a bounded
buffer under a lock; a writer thread hands it to the sink every ``flush_interval`` seconds (or
sooner when half full) — small batches often, so the thread never holds the interpreter long
enough to show in a query's tail (the Parquet sink appends each as a row group of an open file). A full buffer drops the query's rows and counts them — never blocks, never hides
it (``stats()``, the server's metrics); ``close()`` flushes what is buffered, so a clean shutdown
loses nothing. A sink that fails keeps its batch for the next flush, up to the buffer's bound and
``RETRIES`` tries; then the batch is dropped and counted, and logging goes on.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from parity.ports.feature_log import FeatureLogSink
from parity.semantics.wire import to_json

RETRIES = 3  # flushes a batch is tried in before it is dropped (counted)
COLUMNS = ("request_id", "request_time_us", "served_at_us", "principal", "row", "entity", "values", "statuses",
           "versions")


class FeatureLogger:
    def __init__(self, sink: FeatureLogSink, *, sample_rate: float = 0.01, max_rows: int = 200_000,
                 flush_interval: float = 0.25, draw: Callable[[], float] = random.random,
                 clock: Callable[[], int] = lambda: time.time_ns() // 1000) -> None:
        self.sink, self.sample_rate, self.max_rows, self.flush_interval = sink, sample_rate, max_rows, flush_interval
        self._draw, self._clock = draw, clock
        self._lock = threading.Condition()
        # Column by column, as the sink takes them: a flush swaps lists, it does not transpose rows
        # (what it holds the GIL for is what the event loop waits for).
        self._columns: list[list[object]] = [[] for _ in COLUMNS]
        self._written = self._dropped = self._failed_flushes = 0
        self._failing = 0  # flushes of the buffered batch that failed in a row
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="parity-feature-log", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether the query being answered is logged (decided before it runs: a logged one is
        answered with statuses, which the log keeps)."""
        return self.sample_rate > 0 and (self.sample_rate >= 1 or self._draw() < self.sample_rate)

    def record(self, keys: Sequence[Mapping[str, object]], features: Sequence[str], versions: Mapping[str, str],
               rows: Sequence[Mapping[str, object]], statuses: Sequence[Mapping[str, str]] | None,
               request_time_us: int, principal: str | None, request_id: str | None = None) -> str:
        """Buffer one answered query (its entities' keys, in row order); returns its request id."""
        request_id = str(request_id) if request_id else uuid.uuid4().hex
        served = self._clock()
        n = len(rows)
        dumps = orjson.dumps
        version_text = dumps({ref: versions.get(ref) for ref in features}).decode()  # one text, every row
        entities = [dumps(to_json(dict(key)), option=orjson.OPT_SORT_KEYS).decode() for key in keys]
        values = [dumps(to_json(row)).decode() for row in rows]
        status_texts = [None] * n if statuses is None else [dumps(dict(s)).decode() for s in statuses]
        with self._lock:
            if self._closed or len(self._columns[0]) + n > self.max_rows:
                self._dropped += n
                return request_id
            columns = self._columns
            for column, part in zip(columns, ([request_id] * n, [request_time_us] * n, [served] * n,
                                              [principal] * n, list(range(n)), entities, values, status_texts,
                                              [version_text] * n)):
                column.extend(part)
            if len(columns[0]) * 2 >= self.max_rows:
                self._lock.notify()
        return request_id

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._closed:
                    self._lock.wait(self.flush_interval)
                closed = self._closed
            self.flush()
            if closed:
                try:
                    self.sink.close()
                except Exception:  # noqa: BLE001 - said in the stats; the process is going away
                    with self._lock:
                        self._failed_flushes += 1
                return

    def flush(self) -> int:
        """Write what is buffered now (the writer thread does this; ``close`` does it last)."""
        with self._lock:
            batch, self._columns = self._columns, [[] for _ in COLUMNS]
        n = len(batch[0])
        if not n:
            try:
                self.sink.idle()
            except Exception:  # noqa: BLE001 - retried at the next tick
                with self._lock:
                    self._failed_flushes += 1
            return 0
        try:
            self.sink.write(dict(zip(COLUMNS, batch)))
        except Exception:  # noqa: BLE001 - any sink failure: kept for the next flush, within the bound
            with self._lock:
                self._failed_flushes += 1
                self._failing += 1
                if self._failing >= RETRIES:  # not the disk but the batch, or a disk that stays broken
                    self._dropped += n
                    self._failing = 0
                    return 0
                room = max(self.max_rows - len(self._columns[0]), 0)
                self._dropped += max(n - room, 0)
                self._columns = [old[:room] + new for old, new in zip(batch, self._columns)]
            return 0
        with self._lock:
            self._written += n
            self._failing = 0
        return n

    def drop(self, rows: int) -> None:
        """Count rows that could not even be recorded (a value the log cannot write)."""
        with self._lock:
            self._dropped += rows

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"written": self._written, "dropped": self._dropped, "buffered": len(self._columns[0]),
                    "failed_flushes": self._failed_flushes, "sample_rate": self.sample_rate}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify()
        self._thread.join()
