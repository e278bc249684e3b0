"""Training sets side by side, on the same data, in one run: parity, a hand-written DuckDB ASOF
JOIN with the same semantics, and Feast's get_historical_features on its DuckDB offline store.

    python bench/bench_training_set.py medium [--feast-python bench/.venv-feast/bin/python]

Each engine runs in its own process (so peak memory is its own); results are compared row by row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from datagen import FEATURES, generate  # noqa: E402


def run_parity(data: str, out: str, as_of: str) -> dict[str, float]:
    import polars as pl

    import parity as pt

    user = pt.Entity("user", keys={"user_id": pt.Int64})
    dtypes = {"txn_count_1h": pt.Int64, "txn_count_24h": pt.Int64, "distinct_merchants_24h": pt.Int64,
              "declines_24h": pt.Int64, "is_new_device": pt.Bool, "last_country": pt.String}
    view = pt.FeatureView("user_stats", entity=user, features=[pt.Feature(f, dtypes.get(f, pt.Float64)) for f in FEATURES],
                          source=pt.ParquetSource("rows", path=os.path.join(data, "rows.parquet"), event_time="event_ts",
                                                  created_time="created_ts", as_of=as_of))
    with tempfile.TemporaryDirectory() as tmp:
        project = pt.Project.from_definitions([user, view], root=tmp, online_store_path=os.path.join(tmp, "o.db"))
        spine = pl.read_parquet(os.path.join(data, "spine.parquet")).with_row_index("row_id")
        started = time.perf_counter()
        table = project.training_set(spine, [f"user.{f}" for f in FEATURES], timestamp_column="ts")
        seconds = time.perf_counter() - started
    frame = pl.from_arrow(table)
    frame.select("row_id", *[pl.col(f"user.{f}").alias(f) for f in FEATURES]).write_parquet(out)
    return {"seconds": seconds, "rows": table.num_rows}


def run_duckdb(data: str, out: str) -> dict[str, float]:
    import duckdb

    cols = ", ".join(f"d.{f}" for f in FEATURES)
    rows = os.path.join(data, "rows.parquet")
    spine = os.path.join(data, "spine.parquet")
    # Same semantics as Feast and parity's as_of="event_time": latest event_ts <= ts per user, ties
    # broken by created_ts, then file row order; deduplicated first because ASOF JOIN picks any of
    # equal timestamps.
    query = f"""
        WITH r AS (SELECT *, file_row_number AS seq FROM read_parquet('{rows}', file_row_number = true)),
        dedup AS (SELECT * FROM r QUALIFY row_number() OVER (PARTITION BY user_id, event_ts
                                                             ORDER BY created_ts DESC, seq DESC) = 1),
        s AS (SELECT *, (row_number() OVER ()) - 1 AS row_id FROM read_parquet('{spine}'))
        SELECT s.row_id, {cols} FROM s ASOF LEFT JOIN dedup d ON s.user_id = d.user_id AND s.ts >= d.event_ts
    """
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    started = time.perf_counter()
    table = con.sql(query).to_arrow_table()
    seconds = time.perf_counter() - started
    import pyarrow.parquet as pq

    pq.write_table(table, out)
    return {"seconds": seconds, "rows": table.num_rows}


def _child(argv: list[str], python: str = sys.executable) -> dict[str, float]:
    """Run one engine in its own process; add its peak RSS (MB)."""
    proc = subprocess.Popen([python, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stdout = proc.stdout.read() if proc.stdout else ""
    stderr = proc.stderr.read() if proc.stderr else ""
    if status != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_mb"] = usage.ru_maxrss / 1024
    return result


def _mismatches(a_path: str, b_path: str) -> int:
    import polars as pl

    a = pl.read_parquet(a_path).sort("row_id")
    b = pl.read_parquet(b_path).sort("row_id").select(a.columns).cast(a.schema)
    if a.height != b.height:
        return abs(a.height - b.height) + min(a.height, b.height)
    bad = pl.lit(False)
    for f in FEATURES:
        bad = bad | pl.col(f).ne_missing(pl.col(f"{f}_b"))
    joined = a.join(b.rename({f: f"{f}_b" for f in FEATURES}), on="row_id")
    return int(joined.select(bad.sum()).item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("size", nargs="?", default="small")
    parser.add_argument("--feast-python", default=os.path.join(HERE, ".venv-feast", "bin", "python"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, data, out = args.child[:3]
        result = run_duckdb(data, out) if engine == "duckdb" else run_parity(data, out, engine)
        print(json.dumps(result))
        return
    data = generate(args.size, os.path.join(HERE, "data"))
    me = os.path.abspath(__file__)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {name: os.path.join(tmp, f"{name}.parquet") for name in ("event_time", "visible", "duckdb", "feast")}
        for name in ("event_time", "visible", "duckdb"):
            results[name] = _child([me, args.size, "--child", name, data, outs[name]])
            print(f"{name}: {results[name]}", file=sys.stderr)
        if os.path.exists(args.feast_python):
            feast = _child([os.path.join(HERE, "feast_side.py"), "historical", data, outs["feast"]], python=args.feast_python)
            results["feast"] = feast
            print(f"feast: {feast}", file=sys.stderr)
            results["feast"]["mismatches_vs_duckdb"] = _mismatches(outs["duckdb"], outs["feast"])
        results["event_time"]["mismatches_vs_duckdb"] = _mismatches(outs["duckdb"], outs["event_time"])
    base = results["event_time"]["seconds"]
    print(f"\n| engine ({args.size}) | seconds | × parity | peak MB | mismatches vs DuckDB reference |")
    print("| --- | --- | --- | --- | --- |")
    labels = {"event_time": "parity (as_of=event_time)", "visible": "parity (as_of=visible, created-time visibility)",
              "duckdb": "hand-written DuckDB ASOF JOIN", "feast": "Feast 0.67 get_historical_features (DuckDB store)"}
    for name, r in results.items():
        mism = r.get("mismatches_vs_duckdb", "—" if name != "duckdb" else "reference")
        print(f"| {labels[name]} | {r['seconds']:.2f} | {r['seconds'] / base:.2f} | {r['peak_mb']:.0f} | {mism} |")


if __name__ == "__main__":
    main()
