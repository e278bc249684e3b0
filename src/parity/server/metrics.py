"""Prometheus metrics of ``parity serve``, summed over its worker processes.

prometheus_client's multiprocess mode: ``parity serve`` gives the workers one fresh directory
(``PROMETHEUS_MULTIPROC_DIR``) where each keeps its counters in memory-mapped files, and a scrape
of any worker reads them all — so a scrape does not depend on which worker answered it. Stream
freshness (event → servable p50/p99, consumer lag) is read at scrape time from what ``parity
stream`` — or the server worker that is a source's push writer — writes every second. ``GET /v1/metrics`` needs a token, as every data endpoint does.
"""

from __future__ import annotations

import bisect
import glob
import json
import math
import os
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from parity.ports.monitor_store import MonitorStore

_BOUNDS: dict[Any, tuple[float, ...]] = {}  # each histogram's bucket bounds, +Inf last (``Pending.observe``)


def _histogram(name: str, documentation: str, labels: list[str], buckets: tuple[float, ...]) -> Histogram:
    metric = Histogram(name, documentation, labels, buckets=buckets)
    _BOUNDS[metric] = (*buckets, math.inf)
    return metric


_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

REQUESTS = Counter("parity_requests", "HTTP requests by endpoint and outcome (ok or the error code)",
                   ["endpoint", "outcome"])
LATENCY = _histogram("parity_request_duration_seconds", "time from the request to the answer, by endpoint",
                     ["endpoint"], _LATENCY_BUCKETS)
ENTITIES = _histogram("parity_query_entities", "entities per query", [], _SIZE_BUCKETS)
FEATURES = _histogram("parity_query_features", "features per query", [], _SIZE_BUCKETS)
VALUES = Counter("parity_query_values", "values answered by status (asked with with_status): present / all is the "
                 "online store's hit ratio", ["status"])
AUDIT_RECORDS = Counter("parity_audit_records", "audit records written")
AUDIT_FLUSH = Histogram("parity_audit_flush_duration_seconds", "one group commit of the audit trail (write + fsync)",
                        buckets=_LATENCY_BUCKETS)
AUDIT_FAILURES = Counter("parity_audit_flush_failures", "group commits of the audit trail that failed (retried)")
PUSHED = Counter("parity_pushed_events", "events pushed over HTTP, by stream source and outcome (accepted, duplicate)",
                 ["source", "outcome"])
STEP_LATENCY = _histogram("parity_step_duration_seconds", "one step of an online query: kind lookup (online "
                          "store), window, resolver, or source (a request-time read of a view's source), by name",
                          ["kind", "name"], _LATENCY_BUCKETS)
STEP_KEYS = Counter("parity_step_keys", "keys a step was asked for; source / lookup of a view is its request-time "
                    "lookup ratio", ["kind", "name"])
STEP_FAILURES = Counter("parity_step_failures", "keys a step failed for (a resolver raised or timed out, a source "
                        "or the store was unavailable)", ["kind", "name"])
FEATURE_LOG = Counter("parity_feature_log_rows", "rows of the served-value log: written, dropped (its buffer was "
                      "full, or a batch failed every try)", ["outcome"])
FEATURE_LOG_FAILURES = Counter("parity_feature_log_flush_failures", "writes of the served-value log that failed")
FEATURE_LOG_BUFFERED = Gauge("parity_feature_log_buffered_rows", "rows of the served-value log waiting to be written",
                             multiprocess_mode="livesum")
IN_FLIGHT = Gauge("parity_requests_in_flight", "requests being answered", multiprocess_mode="livesum")
MONITOR_RUNS = Counter("parity_monitor_runs", "scheduled monitor runs, by outcome (ok, failed)", ["outcome"])
MONITOR_WEBHOOKS = Counter("parity_monitor_webhooks", "breaches POSTed to the webhook, by outcome (delivered, failed)",
                           ["outcome"])


class _StreamFreshness:
    """Stream sources' freshness as ``parity stream`` last wrote it (a file per source)."""

    def __init__(self, state_dir: str) -> None:
        self.folder = os.path.join(state_dir, "freshness")

    def collect(self) -> Iterator[Any]:
        lag = GaugeMetricFamily("parity_stream_consumer_lag", "messages the broker holds past the committed position",
                                labels=["source"])
        servable = GaugeMetricFamily("parity_stream_event_to_servable_seconds",
                                     "event time → servable, over the newest events", labels=["source", "quantile"])
        broken = GaugeMetricFamily("parity_stream_expectations_broken",
                                   "applied events that broke a warn-mode expectation since the consumer started",
                                   labels=["source", "expectation"])
        for path in sorted(glob.glob(os.path.join(self.folder, "*.json"))):
            try:
                with open(path) as fh:
                    stats = json.load(fh)
            except (OSError, ValueError):
                continue  # being rewritten: the next scrape reads it
            source = str(stats.get("source", os.path.basename(path)[:-5]))
            if stats.get("consumer_lag") is not None:
                lag.add_metric([source], float(stats["consumer_lag"]))
            for quantile, key in (("0.5", "p50_ms"), ("0.99", "p99_ms")):
                value = (stats.get("event_to_servable") or {}).get(key)
                if value is not None:
                    servable.add_metric([source, quantile], float(value) / 1e3)
            for what, n in (stats.get("expectations_broken") or {}).items():
                broken.add_metric([source, str(what)], float(n))
        yield lag
        yield servable
        yield broken


class _MonitorResults:
    """The newest result of each monitor (metric, feature version) from the monitoring store."""

    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        alarm = GaugeMetricFamily("parity_monitor_alarm", "1 when a monitor's newest window breached (drift, null "
                                  "burst, expectation, freshness), else 0", labels=["metric", "feature", "version"])
        value = GaugeMetricFamily("parity_monitor_value", "a monitor's newest value (a distance, p-value, null rate, "
                                  "broken values or age in seconds)", labels=["metric", "feature", "version"])
        for point in self.store.latest():
            labels = [point.metric, point.feature, point.version]
            alarm.add_metric(labels, 1.0 if point.status in ("drift", "breach") else 0.0)
            if point.value is not None:
                value.add_metric(labels, float(point.value))
        yield alarm
        yield value


class Pending:
    """What this worker counted since its last flush. The request path adds to a dict under a
    lock (a few hundred ns); ``flush`` — every 100 ms from the server's flusher, and before a
    scrape — writes the sums into prometheus_client's shared files, a few µs per series instead
    of per request (each write there checks the pid and takes a lock: ~10 % of a worker's CPU at
    9k requests/s when done per request). A scrape sees a worker's counts at most one flush late."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[Any, tuple[str, ...]], float] = {}
        self._observed: dict[tuple[Any, tuple[str, ...]], list[Any]] = {}

    def count(self, metric: Any, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        key = (metric, labels)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + amount

    def observe(self, metric: Any, labels: tuple[str, ...], amount: float) -> None:
        key = (metric, labels)
        bounds = _BOUNDS[metric]
        with self._lock:
            entry = self._observed.get(key)
            if entry is None:
                entry = self._observed[key] = [0.0, [0] * len(bounds)]
            entry[0] += amount
            entry[1][bisect.bisect_left(bounds, amount)] += 1  # the first bucket whose bound holds it

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            observed, self._observed = self._observed, {}
        for (metric, labels), amount in counts.items():
            (metric.labels(*labels) if labels else metric).inc(amount)
        for (metric, labels), (total, buckets) in observed.items():
            child = metric.labels(*labels) if labels else metric
            child._sum.inc(total)  # what Histogram.observe does, once per flush (prometheus_client 0.x: pinned <1)
            for i, n in enumerate(buckets):
                if n:
                    child._buckets[i].inc(n)


PENDING = Pending()


class StepMetrics:
    """The online engine's step observer (``online.engine.StepObserver``) as Prometheus series."""

    def __call__(self, kind: str, name: str, seconds: float, keys: int, failed: int) -> None:
        labels = (kind, name)
        PENDING.observe(STEP_LATENCY, labels, seconds)
        PENDING.count(STEP_KEYS, labels, keys)
        if failed:
            PENDING.count(STEP_FAILURES, labels, failed)


def exposition(state_dir: str, monitor: MonitorStore | None = None) -> bytes:
    """The text a scrape gets: every worker's metrics summed (or this process's alone, when the
    server runs without a multiprocess directory), and stream freshness."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, LATENCY, ENTITIES, FEATURES, VALUES, AUDIT_RECORDS, AUDIT_FLUSH, AUDIT_FAILURES,
                          IN_FLIGHT, PUSHED, STEP_LATENCY, STEP_KEYS, STEP_FAILURES, FEATURE_LOG,
                          FEATURE_LOG_FAILURES, FEATURE_LOG_BUFFERED, MONITOR_RUNS, MONITOR_WEBHOOKS):
            registry.register(collector)
    registry.register(_StreamFreshness(state_dir))
    if monitor is not None:
        registry.register(_MonitorResults(monitor))
    return bytes(generate_latest(registry))
