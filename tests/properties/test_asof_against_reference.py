"""Training sets against a plain, obviously correct reference of the as-of rule (DESIGN.md,
semantics 2-4), on random data: ties, exact edges, late rows, nulls, unknown and duplicate keys."""

from __future__ import annotations

import datetime as dt
import os
import tempfile

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import parity as pt
from parity.semantics.values import same_value

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
TIMES = st.integers(0, 10).map(lambda h: BASE + dt.timedelta(hours=h))


def reference(rows, key, t, as_of, max_age):  # type: ignore[no-untyped-def]
    """The rule written out loop by loop: visible rows of the key, the greatest by (event, created,
    position); null when none or older than max_age; a null value stays null."""
    best = None
    for position, (k, event, created, value) in enumerate(rows):
        known = created if created is not None else event
        if k != key or event > t or (as_of == "visible" and known > t):
            continue
        order = (event, known, position)
        if best is None or order > best[0]:
            best = (order, value)
    if best is None:
        return None
    if max_age is not None and t - best[0][0] > max_age:
        return None
    return best[1]


@settings(max_examples=150, deadline=None)
@given(
    key_type=st.sampled_from(["int", "str"]),
    rows=st.lists(
        st.tuples(st.integers(1, 3), TIMES, st.one_of(st.none(), st.integers(0, 4).map(lambda h: dt.timedelta(hours=h))),
                  st.one_of(st.none(), st.integers(-5, 5))),
        max_size=30,
    ),
    spine=st.lists(st.tuples(st.integers(0, 4), TIMES), min_size=1, max_size=20),
    as_of=st.sampled_from(["visible", "event_time"]),
    max_age_h=st.sampled_from([None, 0, 1, 3]),
    split=st.integers(1, 4),
)
def test_training_set_equals_reference(key_type, rows, spine, as_of, max_age_h, split):
    cast = (lambda k: k) if key_type == "int" else (lambda k: f"k{k}")
    dtype = pt.Int64 if key_type == "int" else pt.String
    data = [(cast(k), e, None if d is None else e + d, v) for k, e, d, v in rows]
    max_age = None if max_age_h is None else dt.timedelta(hours=max_age_h)
    with tempfile.TemporaryDirectory() as tmp:
        # a folder of Parquet files: ingestion order is file-name order, then row order
        os.makedirs(os.path.join(tmp, "rows"))
        frame = pl.DataFrame(data, schema={"k": pl.Int64 if key_type == "int" else pl.String,
                                           "ev": pl.Datetime("us", "UTC"), "cr": pl.Datetime("us", "UTC"),
                                           "v": pl.Int64}, orient="row")
        chunk = max(1, (len(data) + split - 1) // split)
        for i in range(0, max(len(data), 1), chunk):
            frame.slice(i, chunk).write_parquet(os.path.join(tmp, "rows", f"part-{i:04d}.parquet"))
        entity = pt.Entity("thing", keys={"k": dtype})
        view = pt.FeatureView("v", entity=entity, max_age=max_age, features=[pt.Feature("v", pt.Int64)],
                              source=pt.ParquetSource("rows", path="rows", event_time="ev", created_time="cr", as_of=as_of))
        project = pt.Project.from_definitions([entity, view], root=tmp, online_store_path=os.path.join(tmp, "o.db"))
        spine_frame = pl.DataFrame({"k": [cast(k) for k, _ in spine], "timestamp": [t for _, t in spine],
                                    "label": list(range(len(spine)))})
        table = project.training_set(spine_frame, ["thing.v"])
        assert table.column("label").to_pylist() == list(range(len(spine)))  # order and pass-through
        got = table.column("thing.v").to_pylist()
        want = [reference(data, cast(k), t, as_of, max_age) for k, t in spine]
        assert all(same_value(g, w) for g, w in zip(got, want)), (got, want)
