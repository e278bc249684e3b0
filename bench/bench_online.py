"""Online side by side: materialization time and in-process query latency (p50/p99) for
1 entity x 10 features and 100 entities x 10 features — parity with its SQLite store, parity with
Redis, parity resolving from PostgreSQL at request time, and Feast (SQLite online store).

    python bench/bench_online.py small [--materialize-size medium] [--feast-python PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from datagen import FEATURES, SIZES, generate  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 6, 1, tzinfo=UTC)
DTYPES = {"txn_count_1h": "Int64", "txn_count_24h": "Int64", "distinct_merchants_24h": "Int64",
          "declines_24h": "Int64", "is_new_device": "Bool", "last_country": "String"}


def definitions(source):  # type: ignore[no-untyped-def]
    import parity as pt

    user = pt.Entity("user", keys={"user_id": pt.Int64})
    feats = [pt.Feature(f, getattr(pt, DTYPES.get(f, "Float64"))) for f in FEATURES]
    return user, feats


def latency(query, users: int, iterations: int = 2000) -> dict[str, float]:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    out = {}
    for batch in (1, 100):
        samples = []
        for i in range(iterations + 200):
            keys = {"user_id": [rng.randrange(users) for _ in range(batch)]}
            started = time.perf_counter()
            query(keys)
            if i >= 200:
                samples.append(time.perf_counter() - started)
        samples.sort()
        out[f"p50_{batch}_us"] = samples[len(samples) // 2] * 1e6
        out[f"p99_{batch}_us"] = samples[int(len(samples) * 0.99)] * 1e6
    return out


def _materialized(data: str, store: str, tmp: str):  # type: ignore[no-untyped-def]
    """A project over ``data`` materialized into ``store``; returns it and the timing."""
    import parity as pt

    user, feats = definitions(None)
    view = pt.FeatureView("user_stats", entity=user, features=feats,
                          source=pt.ParquetSource("rows", path=os.path.join(data, "rows.parquet"),
                                                  event_time="event_ts", created_time="created_ts"))
    kwargs = {"online_store_path": os.path.join(tmp, f"{os.path.basename(data)}-{store}.db")}
    if store == "redis":
        kwargs = {"online_store_type": "redis", "online_store_url": "redis://127.0.0.1:6379/0",
                  "online_store_namespace": f"bench-{os.path.basename(data)}"}
    project = pt.Project.from_definitions([user, view], root=tmp, **kwargs)
    started = time.perf_counter()
    report = project.materialize(until=NOW, incremental=False)[0]
    return project, {"materialize_s": time.perf_counter() - started, "rows": report.rows_read, "keys": report.keys}


def parity_store(data: str, store: str, tmp: str) -> dict[str, float]:
    project, result = _materialized(data, store, tmp)
    refs = [f"user.{f}" for f in FEATURES]
    users = SIZES[os.path.basename(data)][0]
    result.update(latency(lambda keys: project.query(keys, refs, now=NOW), users))
    project.close()
    return result


def materialize_only(data: str, store: str, tmp: str) -> dict[str, float]:
    project, result = _materialized(data, store, tmp)
    project.close()
    return result


def parity_postgres(data: str, tmp: str) -> dict[str, float]:
    """Request-time lookups in PostgreSQL (max_staleness=0: every query asks the database)."""
    import polars as pl
    import psycopg

    import parity as pt

    url = os.environ.get("PARITY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    os.environ["PARITY_BENCH_PG"] = url
    frame = pl.read_parquet(os.path.join(data, "rows.parquet")).with_row_index("id")
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS parity_bench_rows")
        cols = ", ".join(f"{f} {'bigint' if DTYPES.get(f) == 'Int64' else 'boolean' if DTYPES.get(f) == 'Bool' else 'text' if DTYPES.get(f) == 'String' else 'double precision'}" for f in FEATURES)
        con.execute(f"CREATE TABLE parity_bench_rows (id bigint, user_id bigint, event_ts timestamptz, created_ts timestamptz, {cols})")
        buf = io.BytesIO()
        frame.select("id", "user_id", "event_ts", "created_ts", *FEATURES).write_csv(buf, include_header=False)
        with con.cursor().copy(f"COPY parity_bench_rows FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buf.getvalue())
        con.execute("CREATE INDEX ON parity_bench_rows (user_id, event_ts)")
        con.execute("ANALYZE parity_bench_rows")
    user, feats = definitions(None)
    view = pt.FeatureView("user_stats", entity=user, features=feats, max_staleness=dt.timedelta(0), timeout=2.0,
                          source=pt.PostgresSource("rows", table="parity_bench_rows", connection="env:PARITY_BENCH_PG",
                                                   event_time="event_ts", created_time="created_ts", sequence="id"))
    project = pt.Project.from_definitions([user, view], root=tmp, online_store_path=os.path.join(tmp, "pg.db"))
    refs = [f"user.{f}" for f in FEATURES]
    users = SIZES[os.path.basename(data)][0]
    result = latency(lambda keys: project.query(keys, refs, now=NOW), users, iterations=1000)
    project.close()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP TABLE parity_bench_rows")
    return result


def feast(python: str, command: str, data: str, online_store: str) -> dict[str, float]:
    done = subprocess.run([python, os.path.join(HERE, "feast_side.py"), command, data], capture_output=True, text=True,
                          check=True, env={**os.environ, "FEAST_ONLINE": online_store})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("size", nargs="?", default="small")
    parser.add_argument("--materialize-size", default=None, help="also time materialization at this size")
    parser.add_argument("--feast-python", default=os.path.join(HERE, ".venv-feast", "bin", "python"))
    parser.add_argument("--only", nargs="*", default=["sqlite", "redis", "postgres", "feast"])
    args = parser.parse_args()
    data = generate(args.size, os.path.join(HERE, "data"))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for store in ("sqlite", "redis"):
            if store in args.only:
                try:
                    results[f"parity-{store}"] = parity_store(data, store, tmp)
                except Exception as exc:  # noqa: BLE001 - a missing service is reported, not fatal
                    print(f"parity-{store}: skipped ({exc})", file=sys.stderr)
        if "postgres" in args.only:
            results["parity-postgres-request-time"] = parity_postgres(data, tmp)
        if "feast" in args.only and os.path.exists(args.feast_python):
            for online_store in ("sqlite", "redis"):
                mat = feast(args.feast_python, "materialize", data, online_store)
                online = feast(args.feast_python, "online", data, online_store)
                results[f"feast-{online_store}"] = {"materialize_s": mat["seconds"],
                                                    **{f"{k}_us": v for k, v in online.items()}}
        if args.materialize_size:
            big = generate(args.materialize_size, os.path.join(HERE, "data"))
            for store in ("sqlite", "redis"):
                if store in args.only:
                    try:
                        results[f"parity-{store} ({args.materialize_size})"] = materialize_only(big, store, tmp)
                    except Exception as exc:  # noqa: BLE001 - a missing service is reported, not fatal
                        print(f"parity-{store} materialize: skipped ({exc})", file=sys.stderr)
            if "feast" in args.only and os.path.exists(args.feast_python):
                for online_store in ("sqlite", "redis"):
                    mat = feast(args.feast_python, "materialize", big, online_store)
                    results[f"feast-{online_store} ({args.materialize_size})"] = {"materialize_s": mat["seconds"]}
    print(json.dumps(results, indent=1), file=sys.stderr)
    print(f"\n| path ({args.size}) | materialize s | 1x10 p50 µs | 1x10 p99 µs | 100x10 p50 µs | 100x10 p99 µs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        mat = f"{r['materialize_s']:.2f}" if "materialize_s" in r else "—"
        lat = [f"{r[k]:.0f}" if k in r else "—" for k in ("p50_1_us", "p99_1_us", "p50_100_us", "p99_100_us")]
        print(f"| {name} | {mat} | {' | '.join(lat)} |")


if __name__ == "__main__":
    main()
