"""Pushed events — out of order, late, re-sent, split into random commits, with a crash between a
commit and its application to the online store — give the same window values online, in the
training set (from the event log) and in the brute-force reference over the logged events."""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parity as pt
from parity.connectors.event_log import EventLog
from parity.define.sources import INGESTED_AT, LOG_SEQUENCE
from parity.ingest import window_index
from parity.semantics import window_histograms
from tests.properties.test_windows import FLOATS, SECOND, _bits
from tests.properties.window_reference import Event, aggregate, in_window
from tests.support_services import REDIS_URL, require_service

T0 = 1_767_225_600 * SECOND
WIDTHS = ["3s", "10s", "lifetime"]
card = pt.Entity("card", keys={"card_id": pt.Int64})
txns = pt.StreamSource(name="txns", event_time="ts", event_id="id",
                       schema={"id": pt.Int64, "card_id": pt.Int64, "ts": pt.Timestamp, "x": pt.Float64,
                               "s": pt.String})
a = pt.agg
view = pt.WindowView("v", entity=card, source=txns, windows=WIDTHS, columns={"x": pt.Float64, "s": pt.String},
                     features=[pt.Aggregate("n", a.count()), pt.Aggregate("fsum", a.sum("x")),
                               pt.Aggregate("fmean", a.mean("x")), pt.Aggregate("fvar", a.var("x")),
                               pt.Aggregate("n_pos", a.count(), where=pt.col("x") > 0),
                               pt.Aggregate("fmax", a.max("x")), pt.Aggregate("sfirst", a.first("s")),
                               pt.Aggregate("sdist", a.count_distinct("s")),
                               # every aggregate read from a window set, one with a filter
                               pt.Aggregate("fmin_a", a.min("x"), where=pt.col("s") == "a"),
                               pt.Aggregate("slast", a.last("s")), pt.Aggregate("slast2", a.last_n_distinct("s", 2)),
                               pt.Aggregate("xdist", a.approx_count_distinct("x")),
                               # histogram lanes: two quantiles share one, a filtered one has its own
                               pt.Aggregate("fp50", a.approx_percentile("x", 0.5)),
                               pt.Aggregate("fp90", a.approx_percentile("x", 0.9)),
                               pt.Aggregate("fp25_b", a.approx_percentile("x", 0.25), where=pt.col("s") == "b")])


@pytest.fixture(autouse=True)
def frequent_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """A histogram checkpoint at every lane event at first (the spacing grows with the buckets), so
    a few events per key cross several: late events re-place them, evicted keys read them back."""
    monkeypatch.setattr(window_histograms, "MIN_SPACING", 1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += SECOND  # every commit one second after the one before
        return self.now


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / SECOND, dt.UTC).isoformat()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.tuples(st.integers(1, 2), st.integers(-8, 25),
                            st.one_of(st.none(), st.sampled_from(FLOATS), st.floats(-1e3, 1e3, allow_nan=False)),
                            st.one_of(st.none(), st.sampled_from(["a", "b", ""]))), min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 30), min_size=1, max_size=6),
    resend=st.lists(st.integers(0, 29), max_size=5),
    crash_at=st.one_of(st.none(), st.integers(0, 2)),
    probes=st.lists(st.integers(0, 45), min_size=1, max_size=6),
    evict=st.booleans(),
)
def test_pushed_events_online_equal_offline_equal_reference(store, rows, cuts, resend, crash_at, probes,
                                                            evict) -> None:
    saved = window_index.CACHED_KEYS
    window_index.CACHED_KEYS = 1 if evict else saved  # evict: every write forgets, keys are read back
    try:
        _check_pushed_events(store, rows, cuts, resend, crash_at, probes)
    finally:
        window_index.CACHED_KEYS = saved


def _check_pushed_events(store, rows, cuts, resend, crash_at, probes) -> None:  # type: ignore[no-untyped-def]
    events = [{"id": i, "card_id": k, "ts": _iso(T0 + s * SECOND), "x": x, "s": sv} for i, (k, s, x, sv) in enumerate(rows)]
    sent = events + [events[i] for i in resend if i < len(events)]  # duplicates, re-sent after the originals
    bounds = sorted({0, len(sent), *(c for c in cuts if c < len(sent))})
    batches = [sent[lo:hi] for lo, hi in zip(bounds, bounds[1:])]
    clock = Clock()
    extra: dict[str, str] = {}
    if store == "redis":
        require_service("redis", "127.0.0.1", 6379)
        extra = {"online_store_type": "redis", "online_store_url": REDIS_URL,
                 "online_store_namespace": f"test-stream-windows-{uuid.uuid4().hex}"}
    with tempfile.TemporaryDirectory() as tmp:
        project = pt.Project.from_definitions([card, view], root=tmp, **extra)  # type: ignore[arg-type]
        for i, batch in enumerate(batches):
            ingestor = project.ingestor("txns", clock=clock)
            if i == crash_at:  # the commit lands in the log; the process dies before the online store sees it
                ingestor._apply = lambda frame: (_ for _ in ()).throw(SystemExit("killed"))  # type: ignore[method-assign]
                try:
                    project.push("txns", batch)
                except SystemExit:
                    pass
                project.close()
                project = pt.Project.from_definitions([card, view], root=tmp, **extra)  # type: ignore[arg-type]
                continue
            project.push("txns", batch)
        project.ingestor("txns", clock=clock)  # a restart after the last batch recovers too
        logged = EventLog(txns, tmp).read()
        assert sorted(logged["id"].to_list()) == list(range(len(events)))  # each event once
        reference = [Event(r["card_id"], int(r["ts"].timestamp() * SECOND), int(r[INGESTED_AT].timestamp() * SECOND),
                           r[LOG_SEQUENCE], {"x": r["x"], "s": r["s"]}) for r in logged.iter_rows(named=True)]
        keys = [1 + j % 3 for j in range(len(probes))]
        times = [T0 + p * SECOND for p in probes]
        refs = [f"card.{f.name}[{w}]" for f in view.features for w in WIDTHS]
        spine = pl.DataFrame({"card_id": keys, "timestamp": [dt.datetime.fromtimestamp(t / SECOND, dt.UTC) for t in times]})
        table = pl.from_arrow(project.training_set(spine, refs))
        assert isinstance(table, pl.DataFrame)
        for row, (key, t) in enumerate(zip(keys, times)):
            online = project.query({"card_id": key}, refs, now=dt.datetime.fromtimestamp(t / SECOND, dt.UTC)).rows[0]
            for f in view.features:
                for w in WIDTHS:
                    ref = f"card.{f.name}[{w}]"
                    width = None if w == "lifetime" else int(w[:-1]) * SECOND
                    expected = aggregate(f.aggregation, in_window(reference, key, t, width, True, f.where),
                                         f.aggregation.column == "x")
                    offline = table[ref][row]
                    offline = offline.to_list() if isinstance(offline, pl.Series) else offline
                    assert _bits(offline) == _bits(expected), (ref, key, t, offline, expected)
                    assert _bits(online[ref]) == _bits(expected), (ref, key, t, online[ref], expected)
        if store == "redis":
            project.online_store().drop()  # type: ignore[attr-defined]
        project.close()
