"""Two more sides of online == offline (issue 6): Float64 keys (-0.0 and 0.0 are one key, every NaN
one key), and back-dated rows arriving in new files of a source without a created time, between
incremental materializations."""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st

import parity as pt
from parity.semantics.values import same_value

BASE = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
KEYS = [0.0, -0.0, 1.5, math.nan, 2.0]
SPINE_KEYS = [0.0, -0.0, 1.5, math.nan, 2.0, 3.0, -0.0]
MINUTES = st.sampled_from([0, 30, 60, 90]).map(lambda m: BASE + dt.timedelta(minutes=m))


def same_key(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def reference(rows: list[tuple[float, dt.datetime, int]], key: float, t: dt.datetime) -> int | None:
    best = None
    for position, (k, ev, rid) in enumerate(rows):
        if same_key(k, key) and ev <= t and (best is None or (ev, position) > best[0]):
            best = ((ev, position), rid)
    return None if best is None else best[1]


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(KEYS), MINUTES), max_size=12), t=MINUTES)
@example(rows=[(-0.0, BASE), (0.0, BASE), (math.nan, BASE), (float("nan"), BASE)], t=BASE)
def test_float_keys_are_one_key_per_number_on_every_path(rows, t):
    data = [(k, ev, i) for i, (k, ev) in enumerate(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        pl.DataFrame({"sid": [k for k, _, _ in data], "ev": [e for _, e, _ in data], "rid": [r for _, _, r in data]},
                     schema={"sid": pl.Float64, "ev": pl.Datetime("us", "UTC"), "rid": pl.Int64}).write_parquet(
            os.path.join(tmp, "s.parquet"))
        sensor = pt.Entity("sensor", keys={"sid": pt.Float64})
        view = pt.FeatureView("s", entity=sensor, source=pt.ParquetSource("s", path="s.parquet", event_time="ev"),
                              features=[pt.Feature("rid", pt.Int64)])
        project = pt.Project.from_definitions([sensor, view], root=tmp, online_store_path=os.path.join(tmp, "o.db"))
        try:
            spine = pl.DataFrame({"sid": SPINE_KEYS, "timestamp": [t] * len(SPINE_KEYS)},
                                 schema={"sid": pl.Float64, "timestamp": pl.Datetime("us", "UTC")})
            offline = project.training_set(spine, ["sensor.rid"]).column("sensor.rid").to_pylist()
            project.materialize(until=t, incremental=False)
            online = project.query({"sid": SPINE_KEYS}, ["sensor.rid"], now=t).column("sensor.rid")
        finally:
            project.close()
    want = [reference(data, k, t) for k in SPINE_KEYS]
    assert offline == want, (offline, want)
    assert online == want, (online, want)


BATCH = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 240)), min_size=1, max_size=5)


@settings(max_examples=50, deadline=None)
@given(batches=st.lists(BATCH, min_size=2, max_size=4), gaps=st.lists(st.integers(1, 120), min_size=4, max_size=4))
# The second file's only row is dated before the first run's cutoff: a watermark would skip it.
@example(batches=[[(1, 100)], [(2, 10)]], gaps=[120, 10, 1, 1])
def test_back_dated_files_reach_the_store_through_incremental_runs(batches, gaps):
    """Runs happen after each new file; every file may hold rows older than earlier cutoffs."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "parts")
        os.makedirs(folder)
        user = pt.Entity("user", keys={"user_id": pt.Int64})
        view = pt.FeatureView("u", entity=user, source=pt.ParquetSource("u", path="parts", event_time="ev"),
                              features=[pt.Feature("rid", pt.Int64)])
        stepwise = pt.Project.from_definitions([user, view], root=tmp, online_store_path=os.path.join(tmp, "a.db"))
        everything: list[tuple[int, dt.datetime, int]] = []
        cutoff = BASE
        try:
            for i, batch in enumerate(batches):
                rows = [(u, BASE + dt.timedelta(minutes=m), len(everything) + j) for j, (u, m) in enumerate(batch)]
                everything.extend(rows)
                pl.DataFrame({"user_id": [u for u, _, _ in rows], "ev": [e for _, e, _ in rows],
                              "rid": [r for _, _, r in rows]},
                             schema={"user_id": pl.Int64, "ev": pl.Datetime("us", "UTC"), "rid": pl.Int64}).write_parquet(
                    os.path.join(folder, f"part-{i:03d}.parquet"))
                cutoff = max(cutoff, max(e for _, e, _ in rows)) + dt.timedelta(minutes=gaps[i])
                stepwise.materialize(until=cutoff, incremental=True)
            served = stepwise.query({"user_id": [1, 2, 3]}, ["user.rid"], now=cutoff).column("user.rid")
        finally:
            stepwise.close()
    by_key = {u: [(ev, pos, rid) for pos, (k, ev, rid) in enumerate(everything) if k == u] for u in (1, 2, 3)}
    want = [max(by_key[u])[2] if by_key[u] else None for u in (1, 2, 3)]
    assert all(same_value(a, b) for a, b in zip(served, want)), (served, want)
