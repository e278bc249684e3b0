"""Training sets against a plain, obviously correct reference of DESIGN.md semantics 1-4.

The reference below is a loop over source rows, written from the rules and nothing else:

- a row of key k is visible at t iff its event time ≤ t and, when the source declares a created
  time and ``as_of == "visible"``, its created time ≤ t (a null created time counts as the event time);
- among visible rows the greatest by (event time, created-or-event time, ingestion position) is chosen;
- the value is null when nothing is visible or t − event > max_age (exactly max_age old is valid);
- a null in the chosen row stays null.

The source is a folder of Parquet files with random names, so ingestion order (file-name order, then
row order) decides full ties. The spine is shuffled, has duplicate rows, unknown and null keys,
time zones other than UTC, and extra columns that must come back unchanged, in the same order.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import random
import tempfile

import polars as pl
import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

import parity as pt
from parity.semantics.values import same_value
from tests.spark_support import assert_same_as_local, spark
from tests.support import assert_same_table

UTC = dt.UTC
BASE = dt.datetime(2024, 6, 1, tzinfo=UTC)
GRID = [0, 30, 60, 90, 120, 180]  # event times (minutes after BASE): ties and exact max_age edges
FEATURES = ("v_int", "v_float", "v_str", "v_row")  # v_row: distinct per source row, so a wrong choice shows


def minute(m: int) -> dt.datetime:
    return BASE + dt.timedelta(minutes=m)


# --- the reference ----------------------------------------------------------------------------


def reference(rows, key, t, *, has_created, as_of, max_age):  # type: ignore[no-untyped-def]
    """The chosen row's values {feature: value} for ``key`` at ``t`` (all None when none applies).

    ``rows`` are dicts in ingestion order with "key", "ev", "cr" and the feature values.
    """
    nothing = dict.fromkeys(FEATURES)
    if key is None:
        return nothing
    best_rank, best = None, None
    for position, row in enumerate(rows):
        if row["key"] is None or row["key"] != key:
            continue
        if row["ev"] is None or row["ev"] > t:  # a row without an event time is never visible
            continue
        created = row["cr"] if has_created and row["cr"] is not None else row["ev"]
        if as_of == "visible" and has_created and row["cr"] is not None and row["cr"] > t:
            continue
        rank = (row["ev"], created, position)
        if best_rank is None or rank > best_rank:
            best_rank, best = rank, row
    if best is None:
        return nothing
    return {f: None if max_age[f] is not None and t - best["ev"] > max_age[f] else best[f] for f in FEATURES}


# --- data ---------------------------------------------------------------------------------------

FLOATS = st.one_of(st.none(), st.floats(width=64), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]))
source_row = st.fixed_dictionaries(
    {
        "key": st.sampled_from([1, 1, 2, 2, 3, None]),  # a null key matches no spine row
        "ev": st.one_of(st.sampled_from(GRID).map(minute), st.none()),
        "cr": st.one_of(st.none(), st.sampled_from([-30, 0, 30, 60, 120])),  # minutes after the event
        "v_int": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        "v_float": FLOATS,
        "v_str": st.one_of(st.none(), st.text(max_size=3)),
    }
)
# Physical types of the source's time columns: parity must read each as the same UTC instant.
SOURCE_TIME_TYPES = [pl.Datetime("us", "UTC"), pl.Datetime("ns", "Europe/Berlin"), pl.Datetime("ms", "America/Sao_Paulo")]
SPINE_TIME_TYPES = [pa.timestamp("us", "UTC"), pa.timestamp("ns", "Asia/Kolkata"), pa.timestamp("ms", "UTC"),
                    pa.timestamp("s", "America/New_York")]
SPINE_TIMES = st.one_of(st.sampled_from(GRID), st.integers(-60, 360)).map(minute)
MAX_AGE = st.sampled_from([None, 0, 30, 60, 90, 120]).map(lambda m: None if m is None else dt.timedelta(minutes=m))
FILE_NAME = st.text(alphabet="ab0_-.", min_size=1, max_size=4).map(lambda s: f"{s}.parquet")


def key_of(key: int | None, key_type: str) -> object:
    """The drawn small key as the entity's key: an int, an int so spread out that (key, time) cannot
    be folded into one integer (the engine's other join path), or a string."""
    if key is None:
        return None
    if key_type == "wide":
        return (key - 2) * 2**61
    return key if key_type == "int" else f"k{key}"


def write_folder(folder: str, rows: list[dict], names: list[str], cuts: list[int], time_type: pl.DataType,  # type: ignore[type-arg]
                 key_type: str) -> list[dict]:  # type: ignore[type-arg]
    """Write ``rows`` split at ``cuts`` into files called ``names`` (written in the drawn order, which
    is not their name order); return the rows in ingestion order (file-name order, then row order)."""
    os.makedirs(folder)
    schema = {"key": pl.String if key_type == "str" else pl.Int64, "ev": time_type, "cr": time_type,
              "v_int": pl.Int64, "v_float": pl.Float64, "v_str": pl.String, "v_row": pl.Int64}
    # One chunk per file name: names beyond the cuts get an empty file (still part of the folder).
    bounds = [0, *sorted(min(c, len(rows)) for c in cuts[: len(names) - 1]), len(rows)]
    chunks = [rows[a:b] for a, b in itertools.pairwise(bounds)]
    chunks += [[] for _ in range(len(names) - len(chunks))]
    by_name = dict(zip(names, chunks, strict=True))
    for name, chunk in by_name.items():
        pl.DataFrame(chunk, schema=schema, orient="row").write_parquet(os.path.join(folder, name))
    return [r for name in sorted(by_name) for r in by_name[name]]


@settings(max_examples=120, deadline=None)
@given(
    raw_rows=st.lists(source_row, max_size=24),
    names=st.lists(FILE_NAME, min_size=1, max_size=5, unique=True),
    cuts=st.lists(st.integers(0, 24), max_size=4),
    key_type=st.sampled_from(["int", "wide", "str"]),
    has_created=st.booleans(),
    as_of=st.sampled_from(["visible", "event_time"]),
    view_max_age=MAX_AGE,
    float_max_age=st.one_of(st.none(), MAX_AGE),
    source_time_type=st.sampled_from(SOURCE_TIME_TYPES),
    spine_rows=st.lists(st.tuples(st.sampled_from([0, 1, 2, 3, 4, None]), SPINE_TIMES, st.sampled_from([0, 0, -1, 1])),
                        min_size=1, max_size=12),
    repeat=st.lists(st.integers(0, 11), max_size=4),
    shuffle=st.randoms(use_true_random=False),
    spine_time_type=st.sampled_from(SPINE_TIME_TYPES),
    narrow_key=st.booleans(),
)
# Tie on event time: the greater created time wins although it was ingested first.
@example(
    raw_rows=[{"key": 1, "ev": minute(60), "cr": 30, "v_int": 0, "v_float": 0.0, "v_str": "same"}, {"key": 1, "ev": minute(60), "cr": 0, "v_int": 0, "v_float": 0.0, "v_str": "same"}],
    names=["a.parquet"], cuts=[], key_type="int", has_created=True, as_of="visible", view_max_age=None,
    float_max_age=None, source_time_type=SOURCE_TIME_TYPES[0], spine_rows=[(1, minute(120), 0)], repeat=[],
    shuffle=random.Random(0), spine_time_type=SPINE_TIME_TYPES[0], narrow_key=False,
)
# A null created time counts as the event time: it beats a created time before the event.
@example(
    raw_rows=[{"key": 1, "ev": minute(60), "cr": None, "v_int": 0, "v_float": 0.0, "v_str": "same"}, {"key": 1, "ev": minute(60), "cr": -30, "v_int": 0, "v_float": 0.0, "v_str": "same"}],
    names=["a.parquet"], cuts=[], key_type="int", has_created=True, as_of="visible", view_max_age=None,
    float_max_age=None, source_time_type=SOURCE_TIME_TYPES[0], spine_rows=[(1, minute(120), 0)], repeat=[],
    shuffle=random.Random(0), spine_time_type=SPINE_TIME_TYPES[0], narrow_key=False,
)
# Visible as known at t: the newer event arrived at 150, so at 120 the older row is served.
@example(
    raw_rows=[{"key": 1, "ev": minute(60), "cr": 0, "v_int": 0, "v_float": 0.0, "v_str": "same"}, {"key": 1, "ev": minute(90), "cr": 60, "v_int": 0, "v_float": 0.0, "v_str": "same"}],
    names=["a.parquet"], cuts=[], key_type="int", has_created=True, as_of="visible", view_max_age=None,
    float_max_age=None, source_time_type=SOURCE_TIME_TYPES[0], spine_rows=[(1, minute(120), 0), (1, minute(150), 0), (1, minute(150), -1)], repeat=[],
    shuffle=random.Random(0), spine_time_type=SPINE_TIME_TYPES[0], narrow_key=False,
)
# A row without an event time is never chosen, whatever its created time.
@example(
    raw_rows=[{"key": 1, "ev": minute(60), "cr": None, "v_int": 0, "v_float": 0.0, "v_str": "same"}, {"key": 1, "ev": None, "cr": 0, "v_int": 0, "v_float": 0.0, "v_str": "same"}],
    names=["a.parquet"], cuts=[], key_type="int", has_created=True, as_of="visible", view_max_age=None,
    float_max_age=None, source_time_type=SOURCE_TIME_TYPES[0], spine_rows=[(1, minute(120), 0)], repeat=[],
    shuffle=random.Random(0), spine_time_type=SPINE_TIME_TYPES[0], narrow_key=False,
)
# Three rows in a full tie of (event, created) across two files whose name order is not the order
# they were written in: the last row of the file that sorts last wins.
@example(
    raw_rows=[{"key": 1, "ev": minute(60), "cr": 0, "v_int": i, "v_float": -0.0 if i else 0.0, "v_str": str(i)}
              for i in range(3)],
    names=["b.parquet", "a.parquet"], cuts=[2], key_type="int", has_created=True, as_of="visible",
    view_max_age=dt.timedelta(minutes=60), float_max_age=None, source_time_type=SOURCE_TIME_TYPES[0],
    spine_rows=[(1, minute(120), 0), (1, minute(120), 1), (1, minute(60), -1)], repeat=[0], shuffle=random.Random(0),
    spine_time_type=SPINE_TIME_TYPES[0], narrow_key=False,
)
def test_training_set_equals_reference(raw_rows, names, cuts, key_type, has_created, as_of, view_max_age,
                                       float_max_age, source_time_type, spine_rows, repeat, shuffle,
                                       spine_time_type, narrow_key):
    rows = [{**r, "key": key_of(r["key"], key_type), "v_row": i,
             "cr": None if r["cr"] is None else (r["ev"] or BASE) + dt.timedelta(minutes=r["cr"])}
            for i, r in enumerate(raw_rows)]
    # The spine: drawn rows plus exact duplicates of some of them, shuffled.
    # A microsecond either side of the grid where the spine's time unit can hold it: edges are exact.
    fine = spine_time_type.unit in ("us", "ns")
    spine = [(key_of(k, key_type), t + dt.timedelta(microseconds=jitter if fine else 0)) for k, t, jitter in spine_rows]
    spine += [spine[i % len(spine)] for i in repeat]
    shuffle.shuffle(spine)
    max_age = {"v_int": view_max_age, "v_float": float_max_age if float_max_age is not None else view_max_age,
               "v_str": view_max_age, "v_row": view_max_age}
    if key_type != "str":
        key_arrow = pa.int32() if narrow_key and key_type == "int" else pa.int64()
    else:
        key_arrow = pa.large_string() if narrow_key else pa.string()
    spine_table = pa.table(
        {
            "label": pa.array(range(len(spine)), pa.int64()),
            "thing_key": pa.array([k for k, _ in spine], key_arrow),
            "note": pa.array([None if i % 3 == 0 else f"row {i}" for i in range(len(spine))], pa.string()),
            "at": pa.array([t for _, t in spine], spine_time_type),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        ingested = write_folder(os.path.join(tmp, "rows"), rows, names, cuts, source_time_type, key_type)
        entity = pt.Entity("thing", keys={"k": pt.String if key_type == "str" else pt.Int64})
        source = pt.ParquetSource("rows", path="rows", event_time="ev", created_time="cr" if has_created else None,
                                  as_of=as_of)
        view = pt.FeatureView(
            "things", entity=entity, source=source, max_age=view_max_age, key_columns={"k": "key"},
            features=[pt.Feature("v_int", pt.Int64), pt.Feature("v_float", pt.Float64, max_age=float_max_age),
                      pt.Feature("value_str", pt.String, column="v_str"), pt.Feature("v_row", pt.Int64)],
        )
        project = pt.Project.from_definitions([entity, view], root=tmp, online_store_path=os.path.join(tmp, "o.db"),
                                              registry_path=os.path.join(tmp, "r.db"))
        refs = ["thing.v_int", "thing.v_float", "thing.value_str", "thing.v_row"]
        try:
            table = project.training_set(spine_table, refs, key_columns={"k": "thing_key"}, timestamp_column="at")
            # the partitioned engine: the same table, bit for bit, whatever the number of partitions
            partitioned = project.training_set(spine_table, refs, key_columns={"k": "thing_key"}, timestamp_column="at",
                                               partitions=2 + len(spine) % 5)
            # Spark: the same kernels on the executors, the source read by Spark (one example in four;
            # Spark refuses a folder with hidden file names: tests/conformance/test_spark.py)
            on_spark = None
            if (len(spine) % 4 == 1 or len(raw_rows) == 3) and not any(n.startswith(("_", ".")) for n in names):
                on_spark = project.training_set(spine_table, refs, key_columns={"k": "thing_key"},
                                                timestamp_column="at", engine="spark", spark=spark(),
                                                partitions=1 + len(spine) % 3)
        finally:
            project.close()
    assert_same_table(partitioned, table, "the partitioned engine")
    if on_spark is not None:
        assert_same_as_local(on_spark, table, spine_table.column_names, "Spark")

    # Shape: one row per spine row, in spine order, spine columns unchanged, then the features.
    assert table.column_names == [*spine_table.column_names, *refs]
    assert table.select(spine_table.column_names).equals(spine_table), "spine columns were changed"
    assert [table.schema.field(r).type for r in refs] == [pa.int64(), pa.float64(), pa.string(), pa.int64()]
    got = table.select(refs).to_pylist()
    for i, (key, t) in enumerate(spine):
        want = reference(ingested, key, t, has_created=has_created, as_of=as_of, max_age=max_age)
        for ref, feature in zip(refs, FEATURES):
            g, w = got[i][ref], want[feature]
            assert same_value(g, w) and repr(g) == repr(w), (
                f"spine row {i} (key {key!r}, t {t}): {ref} is {g!r}, the reference says {w!r}"
            )
