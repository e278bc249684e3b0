"""Prometheus metrics of ``parity serve``, summed over its worker processes.

prometheus_client's multiprocess mode: ``parity serve`` gives the workers one fresh directory
(``PROMETHEUS_MULTIPROC_DIR``) where each keeps its counters in memory-mapped files, and a scrape
of any worker reads them all — so a scrape does not depend on which worker answered it. Stream
freshness (event → servable p50/p99, consumer lag) is read at scrape time from what ``parity
stream`` — or the server worker that is a source's push writer — writes every second. ``GET /v1/metrics`` needs a token, as every data endpoint does.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

REQUESTS = Counter("parity_requests", "HTTP requests by endpoint and outcome (ok or the error code)",
                   ["endpoint", "outcome"])
LATENCY = Histogram("parity_request_duration_seconds", "time from the request to the answer, by endpoint",
                    ["endpoint"], buckets=_LATENCY_BUCKETS)
ENTITIES = Histogram("parity_query_entities", "entities per query", buckets=_SIZE_BUCKETS)
FEATURES = Histogram("parity_query_features", "features per query", buckets=_SIZE_BUCKETS)
VALUES = Counter("parity_query_values", "values answered by status (asked with with_status): present / all is the "
                 "online store's hit ratio", ["status"])
AUDIT_RECORDS = Counter("parity_audit_records", "audit records written")
AUDIT_FLUSH = Histogram("parity_audit_flush_duration_seconds", "one group commit of the audit trail (write + fsync)",
                        buckets=_LATENCY_BUCKETS)
AUDIT_FAILURES = Counter("parity_audit_flush_failures", "group commits of the audit trail that failed (retried)")
PUSHED = Counter("parity_pushed_events", "events pushed over HTTP, by stream source and outcome (accepted, duplicate)",
                 ["source", "outcome"])
STEP_LATENCY = Histogram("parity_step_duration_seconds", "one step of an online query: kind lookup (online store), "
                         "window, resolver, or source (a request-time read of a view's source), by name",
                         ["kind", "name"], buckets=_LATENCY_BUCKETS)
STEP_KEYS = Counter("parity_step_keys", "keys a step was asked for; source / lookup of a view is its request-time "
                    "lookup ratio", ["kind", "name"])
STEP_FAILURES = Counter("parity_step_failures", "keys a step failed for (a resolver raised or timed out, a source "
                        "or the store was unavailable)", ["kind", "name"])
IN_FLIGHT = Gauge("parity_requests_in_flight", "requests being answered", multiprocess_mode="livesum")


class _StreamFreshness:
    """Stream sources' freshness as ``parity stream`` last wrote it (a file per source)."""

    def __init__(self, state_dir: str) -> None:
        self.folder = os.path.join(state_dir, "freshness")

    def collect(self) -> Iterator[Any]:
        lag = GaugeMetricFamily("parity_stream_consumer_lag", "messages the broker holds past the committed position",
                                labels=["source"])
        servable = GaugeMetricFamily("parity_stream_event_to_servable_seconds",
                                     "event time → servable, over the newest events", labels=["source", "quantile"])
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
        yield lag
        yield servable


class StepMetrics:
    """The online engine's step observer (``online.engine.StepObserver``) as Prometheus series;
    the labelled children are kept per (kind, name), which the definitions bound."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def __call__(self, kind: str, name: str, seconds: float, keys: int, failed: int) -> None:
        children = self._children.get((kind, name))
        if children is None:
            children = self._children[(kind, name)] = (STEP_LATENCY.labels(kind, name), STEP_KEYS.labels(kind, name),
                                                       STEP_FAILURES.labels(kind, name))
        latency, asked, failures = children
        latency.observe(seconds)
        asked.inc(keys)
        if failed:
            failures.inc(failed)


def exposition(state_dir: str) -> bytes:
    """The text a scrape gets: every worker's metrics summed (or this process's alone, when the
    server runs without a multiprocess directory), and stream freshness."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, LATENCY, ENTITIES, FEATURES, VALUES, AUDIT_RECORDS, AUDIT_FLUSH, AUDIT_FAILURES,
                          IN_FLIGHT, PUSHED, STEP_LATENCY, STEP_KEYS, STEP_FAILURES):
            registry.register(collector)
    registry.register(_StreamFreshness(state_dir))
    return bytes(generate_latest(registry))
