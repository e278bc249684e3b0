"""The approximate aggregates past their exact range, and the kernel across partition sizes.

approx_count_distinct is exact up to 1,024 values; above, it is a HyperLogLog estimate. The
estimate must be the same bits offline (compiled kernel), online (index read) and in the
reference, and the same whatever order or tiling built the registers — the promise DataSketches'
HIP estimator breaks. The offline kernel runs one key partition at a time; any partition size
must give the same answer.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parity as pt
from parity.offline import windows as offline_windows
from parity.semantics import windows as rule
from tests.properties.window_reference import Event, aggregate, in_window

SECOND = 1_000_000
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
card = pt.Entity("card", keys={"card_id": pt.Int64})


@settings(max_examples=15, deadline=None)
@given(values=st.lists(st.integers(0, 2**40), min_size=1100, max_size=2500), seed=st.integers(0, 2**32))
def test_hll_registers_merge_to_the_same_estimate_in_any_order_and_tiling(values: list[int], seed: int) -> None:
    rng = random.Random(seed)
    hashes = [rule.value_hash(v) for v in values]
    whole = rule.hll_estimate(rule.hll_registers(hashes))
    shuffled = hashes[:]
    rng.shuffle(shuffled)
    cuts = sorted(rng.sample(range(1, len(shuffled)), 7))
    tiles = [rule.hll_registers(shuffled[a:b]) for a, b in zip([0, *cuts], [*cuts, len(shuffled)])]
    rng.shuffle(tiles)
    merged = [max(r) for r in zip(*tiles)]
    assert rule.hll_estimate(merged) == whole
    assert abs(whole - len(set(values))) <= 0.1 * len(set(values))  # and it estimates


@pytest.mark.parametrize("partition_events", [3, 50, offline_windows.PARTITION_EVENTS])
def test_past_the_exact_range_offline_online_and_reference_agree(partition_events: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline_windows, "PARTITION_EVENTS", partition_events)
    rng = random.Random(partition_events)
    events = [Event(rng.randint(1, 3), int((T0.timestamp() + rng.randint(0, 3600)) * SECOND), None, i,
                    {"m": f"merchant-{rng.randint(0, 6000)}", "x": rng.uniform(-5, 50)}) for i in range(5000)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.parquet"
        pl.DataFrame({"card_id": [e.key for e in events],
                      "ts": [dt.datetime.fromtimestamp(e.ev / SECOND, dt.UTC) for e in events],
                      "m": [e.values["m"] for e in events], "x": [e.values["x"] for e in events]}).write_parquet(path)
        source = pt.ParquetSource(name="txns", path=str(path), event_time="ts")
        view = pt.WindowView("v", entity=card, source=source, windows=["30m", "lifetime"],
                             columns={"m": pt.String, "x": pt.Float64},
                             features=[pt.Aggregate("approx", pt.agg.approx_count_distinct("m")),
                                       pt.Aggregate("p95", pt.agg.approx_percentile("x", 0.95)),
                                       pt.Aggregate("total", pt.agg.sum("x"))])
        project = pt.Project.from_definitions([card, view], root=tmp)
        times = [T0 + dt.timedelta(minutes=m) for m in (10, 40, 61)]
        spine = pl.DataFrame({"card_id": [k for k in (1, 2, 3) for _ in times], "timestamp": times * 3})
        refs = [f"card.{f}[{w}]" for f in ("approx", "p95", "total") for w in ("30m", "lifetime")]
        table = pl.from_arrow(project.training_set(spine, refs))
        assert isinstance(table, pl.DataFrame)
        project.materialize(until=T0 + dt.timedelta(hours=2))
        beyond = 0
        for row in table.iter_rows(named=True):
            t = int(row["timestamp"].timestamp() * SECOND)
            online = project.query({"card_id": row["card_id"]}, refs, now=row["timestamp"]).rows[0]
            for f in view.features:
                for w, width in (("30m", 30 * 60 * SECOND), ("lifetime", None)):
                    ref = f"card.{f.name}[{w}]"
                    window = in_window(events, row["card_id"], t, width, False, None)
                    expected = aggregate(f.aggregation, window, f.name != "approx")
                    assert row[ref] == expected, (ref, row[ref], expected)
                    assert online[ref] == expected, (ref, online[ref], expected)
                    if f.name == "approx" and len({e.values["m"] for e in window}) > rule.EXACT_DISTINCT:
                        beyond += 1
        project.close()
    assert beyond >= 3  # the lifetime windows hold more than 1,024 merchants: the estimate was compared
