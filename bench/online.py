"""Online side by side, in one run, on the same data (bench/generate.py):

* materialization of the whole feature table (every user's latest row) into the SQLite online
  store — parity ``materialize(until=NOW, incremental=False)`` vs Feast 0.67 ``materialize`` (DuckDB
  offline store → SQLite online store);
* in-process online latency p50/p99 for 1 entity × 10 features and 100 entities × 10 features:
  parity ``Project.query`` vs Feast ``get_online_features(...).to_dict()``, the same random keys for
  both, N timed calls after a warm-up;
* a cross-check: the online values of a sample of users from both engines against a DuckDB
  reference (each user's greatest (event_ts, created_ts, row)).

Each engine runs in its own process (materialization + latency in that process; peak RSS is that
process's), one after the other.

    .venv/bin/python bench/online.py medium [--iterations 2000] [--no-feast]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

from common import FEAST_PYTHON, FEATURES, SIZES, generate, machine, mismatches, run_child

FEATS = list(FEATURES)
NOW = dt.datetime(2025, 7, 5, tzinfo=dt.UTC)  # after every row's created_ts


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))] * 1e6


def child_parity(data: str, keys_path: str, out: str) -> dict[str, object]:
    import tempfile

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import parity as pt

    keys = np.load(keys_path)
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    src = pt.ParquetSource("user_txn_stats", path=os.path.join(data, "feature_rows.parquet"), event_time="event_ts",
                           created_time="created_ts", as_of="event_time")
    view = pt.FeatureView("user_stats", entity=user, source=src,
                          features=[pt.Feature(f, getattr(pt, d)) for f, d in FEATURES.items()], max_age=None)
    refs = [f"user.{f}" for f in FEATS]
    result: dict[str, object] = {}
    steps: list[tuple[float, str]] = []
    with tempfile.TemporaryDirectory(prefix="parity-bench-") as tmp:
        project = pt.Project.from_definitions([user, view], root=tmp, online_store_path=f"{tmp}/online.db",
                                              registry_path=f"{tmp}/reg.db")
        started = time.perf_counter()
        report = project.materialize(until=NOW, incremental=False,
                                     progress=lambda m: steps.append((time.perf_counter(), m)))[0]
        result["materialize_s"] = time.perf_counter() - started
        result["materialize_rows_read"], result["materialize_keys"] = report.rows_read, report.keys
        prev, timings = started, []
        for t, msg in steps:
            timings.append([round(t - prev, 3), msg])
            prev = t
        result["materialize_steps"] = timings
        for name in ("one", "hundred"):
            batches = keys[name].tolist()
            warm = int(keys["warmup"])
            samples = []
            for i, batch in enumerate(batches):
                t = time.perf_counter()
                project.query({"user_id": batch}, refs, now=NOW)
                if i >= warm:
                    samples.append(time.perf_counter() - t)
            result[f"{name}_p50_us"] = _pct(samples, 0.50)
            result[f"{name}_p99_us"] = _pct(samples, 0.99)
            result[f"{name}_n"] = len(samples)
        sample = keys["sample"].tolist()
        cols: dict[str, list[object]] = {"user_id": [], **{f: [] for f in FEATS}}
        for i in range(0, len(sample), 100):
            got = project.query({"user_id": sample[i:i + 100]}, refs, now=NOW)
            cols["user_id"].extend(sample[i:i + 100])
            for f in FEATS:
                cols[f].extend(got.column(f"user.{f}"))
        project.close()
    pq.write_table(pa.table(cols), out)
    return result


def reference(data: str, users: list[int]):  # type: ignore[no-untyped-def]
    """Each sampled user's greatest (event_ts, created_ts, row) — all rows are visible at NOW —
    and whether it is a full tie (another row with the same event_ts and created_ts)."""
    import duckdb
    import polars as pl

    path = os.path.join(data, "feature_rows.parquet").replace("'", "''")
    con = duckdb.connect()
    con.register("sample_users", pl.DataFrame({"user_id": users}).to_arrow())
    table = con.sql(f"""
        SELECT user_id, {', '.join(FEATS)},
               count(*) OVER (PARTITION BY user_id, event_ts, created_ts) > 1 AS full_tie
        FROM read_parquet('{path}', file_row_number = true)
        WHERE user_id IN (SELECT user_id FROM sample_users)
        QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY event_ts DESC, created_ts DESC, file_row_number DESC) = 1
    """).to_arrow_table()
    found = pl.from_arrow(table)
    return pl.DataFrame({"user_id": users}).join(found, on="user_id", how="left").with_columns(
        pl.col("full_tie").fill_null(False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("size", nargs="?", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--users", choices=["skewed", "uniform"], default="skewed", help="data variant (bench/generate.py --users)")
    parser.add_argument("--iterations", type=int, default=2000, help="timed calls per batch size")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--no-feast", action="store_true")
    parser.add_argument("--feast-python", default=FEAST_PYTHON)
    parser.add_argument("--child", nargs=3, metavar=("DATA", "KEYS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_parity(*args.child)))
        return

    import numpy as np
    import polars as pl

    data = generate(args.size, dist=args.users)
    outdir = os.path.join(data, "out")
    os.makedirs(outdir, exist_ok=True)
    users = SIZES[args.size][0]
    rng = np.random.default_rng(7)
    n = args.iterations + args.warmup
    keys_path = os.path.join(outdir, "online_keys.npz")
    sample = rng.choice(users, size=min(2000, users), replace=False).astype(np.int64)
    np.savez(keys_path, one=rng.integers(0, users, (n, 1)), hundred=rng.integers(0, users, (n, 100)),
             warmup=np.int64(args.warmup), sample=sample)
    engines = ["parity"]
    if not args.no_feast and os.path.exists(args.feast_python):
        engines.append("feast")
    elif not args.no_feast:
        print(f"no Feast interpreter at {args.feast_python}: Feast left out", file=sys.stderr)
    me = os.path.abspath(__file__)
    results: dict[str, dict[str, object]] = {}
    run_started = time.time()
    for engine in engines:
        out = os.path.join(outdir, f"online_{engine}.parquet")
        if engine == "parity":
            r = run_child([me, "--child", data, keys_path, out], label=engine)
        else:
            r = run_child([os.path.join(os.path.dirname(me), "feast_run.py"), "online", data, keys_path, NOW.isoformat(), out],
                          python=args.feast_python, label=engine)
        r.pop("stderr_tail", None)
        results[engine] = r
        print(f"{engine}: materialize {r['materialize_s']:.2f}s, 1x10 p50 {r['one_p50_us']:.0f}us p99 {r['one_p99_us']:.0f}us, "
              f"100x10 p50 {r['hundred_p50_us']:.0f}us p99 {r['hundred_p99_us']:.0f}us, peak {r['peak_rss_mb']:.0f} MB",
              file=sys.stderr)
    ref = reference(data, sample.tolist())
    checks = {e: mismatches(ref, pl.read_parquet(os.path.join(outdir, f"online_{e}.parquet")), "user_id", FEATS,
                            exclude="full_tie") for e in engines}
    report = {"size": args.size + ("" if args.users == "skewed" else f" ({args.users} users)"), "machine": machine(), "command": " ".join(sys.argv), "results": results,
              "checks": checks, "sample_users": len(sample), "total_s": round(time.time() - run_started, 1)}
    with open(os.path.join(data, f"online-{args.size}.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    print(format_report(report))


def format_report(report: dict) -> str:  # type: ignore[type-arg]
    res, checks = report["results"], report["checks"]
    p = res["parity"]
    m = report["machine"]
    lines = [f"\n## Online — {report['size']} ({m['date_utc']}, {m['nproc']} cores; parity {m['parity_commit']})\n",
             ("| engine | materialize s | 1×10 p50 µs | 1×10 p99 µs | 100×10 p50 µs | 100×10 p99 µs | peak RSS MB | "
              f"sample mismatches vs reference ({report['sample_users']} users) | … outside full ties |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in res.items():
        c = checks[name]
        lines.append(f"| {name} | {r['materialize_s']:.2f} | {r['one_p50_us']:.0f} | {r['one_p99_us']:.0f} | "
                     f"{r['hundred_p50_us']:.0f} | {r['hundred_p99_us']:.0f} | {r['peak_rss_mb']:,.0f} | "
                     f"{c['mismatched_rows']} | {c.get('mismatched_rows_outside_full_ties')} |")
    if "feast" in res:
        f = res["feast"]
        lines.append("| Feast ÷ parity | " + " | ".join(
            f"{f[k] / p[k]:.1f}×" for k in ("materialize_s", "one_p50_us", "one_p99_us", "hundred_p50_us", "hundred_p99_us"))
            + f" | {f['peak_rss_mb'] / p['peak_rss_mb']:.1f}× | | |")
    lines.append(f"\nparity materialize: {p['materialize_rows_read']:,} rows read, {p['materialize_keys']:,} keys; steps (s): "
                 + "; ".join(f"{s} {m}" for s, m in p["materialize_steps"]))
    lines.append(f"\ntotal benchmark time {report['total_s']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
