"""Online side by side, in one run, on the same data (bench/generate.py):

* materialization of the whole feature table (every user's latest row) into the online store —
  parity ``materialize(until=NOW, incremental=False)`` vs Feast 0.67 ``materialize`` (DuckDB offline
  store → the same kind of online store);
* in-process online latency p50/p99 for 1 entity × 10 features and 100 entities × 10 features:
  parity ``Project.query`` vs Feast ``get_online_features(...).to_dict()``, the same random keys for
  both, N timed calls after a warm-up;
* parity resolving the same view from PostgreSQL at request time (``max_staleness=0``: every query
  asks the database; the table is loaded with COPY and indexed on (user_id, event_ts));
* a cross-check: the online values of a sample of users from every mode against a DuckDB
  reference (each user's greatest (event_ts, created_ts, row)).

Each mode runs in its own process (materialization + latency in that process; peak RSS is that
process's), one after the other.

    .venv/bin/python bench/online.py medium [--stores sqlite,redis] [--postgres] [--iterations 2000] [--no-feast]
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


PG_URL = os.environ.get("PARITY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_TABLE = "parity_bench_feature_rows"
PG_TYPES = {"Int64": "bigint", "Float64": "double precision", "Bool": "boolean", "String": "text"}


def load_postgres(data: str) -> float:
    """feature_rows.parquet into a PostgreSQL table (COPY), indexed for lookups; returns seconds."""
    import io

    import polars as pl
    import psycopg

    started = time.perf_counter()
    frame = pl.read_parquet(os.path.join(data, "feature_rows.parquet")).with_row_index("id")
    cols = ", ".join(f"{f} {PG_TYPES[d]}" for f, d in FEATURES.items())
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(f"DROP TABLE IF EXISTS {PG_TABLE}")
        con.execute(f"CREATE TABLE {PG_TABLE} (id bigint, user_id bigint, event_ts timestamptz, created_ts timestamptz, "
                    f"{cols})")
        for start in range(0, frame.height, 1_000_000):
            buf = io.BytesIO()
            frame.slice(start, 1_000_000).select("id", "user_id", "event_ts", "created_ts", *FEATS).write_csv(
                buf, include_header=False)
            with con.cursor().copy(f"COPY {PG_TABLE} FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(buf.getvalue())
        con.execute(f"CREATE INDEX ON {PG_TABLE} (user_id, event_ts)")
        con.execute(f"ANALYZE {PG_TABLE}")
    return time.perf_counter() - started


def child_parity(data: str, keys_path: str, out: str, mode: str = "sqlite") -> dict[str, object]:
    """One parity mode: ``sqlite`` or ``redis`` (materialize, then serve from that store) or
    ``postgres`` (request-time lookups, SQLite store for the write-back)."""
    import tempfile
    import uuid

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import parity as pt

    keys = np.load(keys_path)
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    features = [pt.Feature(f, getattr(pt, d)) for f, d in FEATURES.items()]
    if mode == "postgres":
        os.environ["PARITY_BENCH_PG"] = PG_URL
        src = pt.PostgresSource("user_txn_stats", table=PG_TABLE, connection="env:PARITY_BENCH_PG",
                                event_time="event_ts", created_time="created_ts", as_of="event_time", sequence="id")
        view = pt.FeatureView("user_stats", entity=user, source=src, features=features, max_staleness=dt.timedelta(0),
                              timeout=5.0)
    else:
        src = pt.ParquetSource("user_txn_stats", path=os.path.join(data, "feature_rows.parquet"), event_time="event_ts",
                               created_time="created_ts", as_of="event_time")
        view = pt.FeatureView("user_stats", entity=user, source=src, features=features, max_age=None)
    refs = [f"user.{f}" for f in FEATS]
    result: dict[str, object] = {"mode": mode}
    steps: list[tuple[float, str]] = []
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    store = {"online_store_type": "redis", "online_store_url": "redis://127.0.0.1:6379/0",
             "online_store_namespace": namespace} if mode == "redis" else {}
    with tempfile.TemporaryDirectory(prefix="parity-bench-") as tmp:
        project = pt.Project.from_definitions([user, view], root=tmp, online_store_path=f"{tmp}/online.db",
                                              registry_path=f"{tmp}/reg.db", **store)  # type: ignore[arg-type]
        if mode == "postgres":
            result["materialize_s"], result["materialize_rows_read"], result["materialize_keys"] = None, 0, 0
            result["materialize_steps"] = []
        else:
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
        if mode == "redis":
            project.online_store().drop()  # type: ignore[attr-defined]
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
    parser.add_argument("--stores", default="sqlite", help="online stores to run parity and Feast on: sqlite,redis")
    parser.add_argument("--postgres", action="store_true", help="also parity resolving from PostgreSQL at request time")
    parser.add_argument("--no-feast", action="store_true")
    parser.add_argument("--feast-python", default=FEAST_PYTHON)
    parser.add_argument("--child", nargs=4, metavar=("DATA", "KEYS", "OUT", "MODE"), help=argparse.SUPPRESS)
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
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    feast = not args.no_feast and os.path.exists(args.feast_python)
    if not args.no_feast and not feast:
        print(f"no Feast interpreter at {args.feast_python}: Feast left out", file=sys.stderr)
    runs = [(f"parity-{s}", "parity", s) for s in stores]
    if args.postgres:
        runs.append(("parity-postgres-request-time", "parity", "postgres"))
    runs += [(f"feast-{s}", "feast", s) for s in stores] if feast else []
    me = os.path.abspath(__file__)
    results: dict[str, dict[str, object]] = {}
    run_started = time.time()
    pg_load_s = load_postgres(data) if args.postgres else None
    for name, engine, mode in runs:
        out = os.path.join(outdir, f"online_{name}.parquet")
        if engine == "parity":
            r = run_child([me, "--child", data, keys_path, out, mode], label=name)
        else:
            r = run_child([os.path.join(os.path.dirname(me), "feast_run.py"), "online", data, keys_path, NOW.isoformat(),
                           out, mode], python=args.feast_python, label=name)
        r.pop("stderr_tail", None)
        results[name] = r
        mat = "-" if r.get("materialize_s") is None else f"{r['materialize_s']:.2f}s"
        print(f"{name}: materialize {mat}, 1x10 p50 {r['one_p50_us']:.0f}us p99 {r['one_p99_us']:.0f}us, "
              f"100x10 p50 {r['hundred_p50_us']:.0f}us p99 {r['hundred_p99_us']:.0f}us, peak {r['peak_rss_mb']:.0f} MB",
              file=sys.stderr)
    if args.postgres:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as con:
            con.execute(f"DROP TABLE IF EXISTS {PG_TABLE}")
    engines = list(results)
    ref = reference(data, sample.tolist())
    checks = {e: mismatches(ref, pl.read_parquet(os.path.join(outdir, f"online_{e}.parquet")), "user_id", FEATS,
                            exclude="full_tie") for e in engines}
    report = {"size": args.size + ("" if args.users == "skewed" else f" ({args.users} users)"), "machine": machine(),
              "command": " ".join(sys.argv), "results": results, "checks": checks, "sample_users": len(sample),
              "postgres_load_s": pg_load_s, "total_s": round(time.time() - run_started, 1)}
    with open(os.path.join(data, f"online-{args.size}.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    print(format_report(report))


def format_report(report: dict) -> str:  # type: ignore[type-arg]
    res, checks = report["results"], report["checks"]
    m = report["machine"]
    lines = [f"\n## Online — {report['size']} ({m['date_utc']}, {m['nproc']} cores; parity {m['parity_commit']})\n",
             ("| engine | materialize s | 1×10 p50 µs | 1×10 p99 µs | 100×10 p50 µs | 100×10 p99 µs | peak RSS MB | "
              f"sample mismatches vs reference ({report['sample_users']} users) | … outside full ties |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in res.items():
        c = checks[name]
        mat = "—" if r.get("materialize_s") is None else f"{r['materialize_s']:.2f}"
        lines.append(f"| {name} | {mat} | {r['one_p50_us']:.0f} | {r['one_p99_us']:.0f} | "
                     f"{r['hundred_p50_us']:.0f} | {r['hundred_p99_us']:.0f} | {r['peak_rss_mb']:,.0f} | "
                     f"{c['mismatched_rows']} | {c.get('mismatched_rows_outside_full_ties')} |")
    keys = ("materialize_s", "one_p50_us", "one_p99_us", "hundred_p50_us", "hundred_p99_us")
    for name in res:
        if not name.startswith("feast-") or f"parity-{name[6:]}" not in res:
            continue
        f, p = res[name], res[f"parity-{name[6:]}"]
        lines.append(f"| {name} ÷ parity-{name[6:]} | " + " | ".join(f"{f[k] / p[k]:.1f}×" for k in keys)
                     + f" | {f['peak_rss_mb'] / p['peak_rss_mb']:.1f}× | | |")
    for name, p in res.items():
        if name.startswith("parity-") and p.get("materialize_steps"):
            lines.append(f"\n{name} materialize: {p['materialize_rows_read']:,} rows read, {p['materialize_keys']:,} keys; "
                         "steps (s): " + "; ".join(f"{s} {m}" for s, m in p["materialize_steps"]))
    if report.get("postgres_load_s"):
        lines.append(f"\nPostgreSQL table loaded (COPY + index) in {report['postgres_load_s']:.1f} s before the runs")
    lines.append(f"\ntotal benchmark time {report['total_s']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
