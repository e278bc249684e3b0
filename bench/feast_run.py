"""Feast's side of the benchmarks. Runs under Feast's own interpreter (bench/.venv-feast), started
as a subprocess by bench/training_set.py and bench/online.py; prints one JSON line on stdout.

    bench/.venv-feast/bin/python bench/feast_run.py historical DATA_DIR OUT.parquet [--visible]
    bench/.venv-feast/bin/python bench/feast_run.py online DATA_DIR KEYS.npz NOW_ISO OUT.parquet [sqlite|redis]
    bench/.venv-feast/bin/python bench/feast_run.py serve DATA_DIR PORT [sqlite|redis]

``historical`` times ``get_historical_features(...).to_arrow()`` on the DuckDB offline store
(``--visible`` passes ``filter_by_created_timestamp=True``: a row counts only once its created
time has passed, parity's default visibility). ``serve`` materializes, then runs ``feast serve``
(its defaults, but ``--max-requests 0``: no worker recycling) until killed. ``online`` times ``materialize`` into the SQLite
online store, then the in-process ``get_online_features`` latency, then dumps the values of a
sample of users for the cross-check.

Each run builds a throwaway Feast repo (FileSource over feature_rows.parquet, duckdb offline
store, sqlite online store) in a temporary folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time

FEATURES = {
    "txn_count_1h": "Int64", "txn_count_24h": "Int64", "amount_sum_1h": "Float64", "amount_avg_24h": "Float64",
    "amount_max_24h": "Float64", "distinct_merchants_24h": "Int64", "foreign_share_7d": "Float64",
    "declines_24h": "Int64", "is_new_device": "Bool", "last_country": "String",
}


def make_store(data_dir: str, root: str, online_store: str = "sqlite"):  # type: ignore[no-untyped-def]
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast import types as ft

    with open(os.path.join(root, "feature_store.yaml"), "w") as fh:
        fh.write(
            "project: parity_bench\nprovider: local\n"
            f"registry: {os.path.join(root, 'registry.db')}\n"
            "offline_store:\n  type: duckdb\n"
            + ("online_store:\n  type: redis\n  connection_string: 127.0.0.1:6379,db=1\n" if online_store == "redis"
               else f"online_store:\n  type: sqlite\n  path: {os.path.join(root, 'online.db')}\n")
            + "entity_key_serialization_version: 3\n"
        )
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="user_txn_stats", path=os.path.abspath(os.path.join(data_dir, "feature_rows.parquet")),
        timestamp_field="event_ts", created_timestamp_column="created_ts",
    )
    # ttl=0: values never expire (parity's max_age=None).
    view = FeatureView(
        name="user_stats", entities=[user], ttl=dt.timedelta(0), source=source,
        schema=[Field(name=f, dtype=getattr(ft, d)) for f, d in FEATURES.items()],
    )
    store = FeatureStore(repo_path=root)
    store.apply([user, view])
    return store


def historical(data_dir: str, out: str, visible: bool) -> dict[str, object]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="feast-repo-") as root:
        store = make_store(data_dir, root)
        spine = pq.read_table(os.path.join(data_dir, "spine.parquet"))
        spine = spine.append_column("row_id", pa.array(range(spine.num_rows), pa.int64()))
        entity_df = spine.to_pandas()
        refs = [f"user_stats:{f}" for f in FEATURES]
        started = time.perf_counter()
        table = store.get_historical_features(
            entity_df=entity_df, features=refs, filter_by_created_timestamp=visible
        ).to_arrow()
        seconds = time.perf_counter() - started
    pq.write_table(table.select(["row_id", *FEATURES]), out)
    return {"seconds": seconds, "rows": table.num_rows}


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))] * 1e6


def online(data_dir: str, keys_path: str, now_iso: str, out: str, online_store: str = "sqlite") -> dict[str, object]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = np.load(keys_path)
    now = dt.datetime.fromisoformat(now_iso)
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="feast-repo-") as root:
        store = make_store(data_dir, root, online_store)
        started = time.perf_counter()
        store.materialize(start_date=dt.datetime(2024, 12, 1, tzinfo=dt.UTC), end_date=now)
        result["materialize_s"] = time.perf_counter() - started
        refs = [f"user_stats:{f}" for f in FEATURES]
        for name in ("one", "hundred"):
            batches = keys[name].tolist()
            warm = int(keys["warmup"])
            samples = []
            for i, batch in enumerate(batches):
                rows = [{"user_id": k} for k in batch]
                t = time.perf_counter()
                store.get_online_features(features=refs, entity_rows=rows).to_dict()
                if i >= warm:
                    samples.append(time.perf_counter() - t)
            result[f"{name}_p50_us"] = _pct(samples, 0.50)
            result[f"{name}_p99_us"] = _pct(samples, 0.99)
            result[f"{name}_n"] = len(samples)
        # Values of a sample of users, for the cross-check against parity and the reference.
        sample = keys["sample"].tolist()
        cols: dict[str, list[object]] = {"user_id": [], **{f: [] for f in FEATURES}}
        for i in range(0, len(sample), 100):
            got = store.get_online_features(features=refs, entity_rows=[{"user_id": k} for k in sample[i:i + 100]]).to_dict()
            cols["user_id"].extend(sample[i:i + 100])
            for f in FEATURES:
                cols[f].extend(got[f])
    pq.write_table(pa.table(cols), out)
    return result


def serve(data_dir: str, port: str, online_store: str = "sqlite") -> None:
    root = tempfile.mkdtemp(prefix="feast-serve-")
    store = make_store(data_dir, root, online_store)
    store.materialize(start_date=dt.datetime(2024, 12, 1, tzinfo=dt.UTC), end_date=dt.datetime.now(dt.UTC))
    feast = os.path.join(os.path.dirname(sys.executable), "feast")
    print(json.dumps({"serving": port, "repo": root}), flush=True)
    os.execv(feast, [feast, "-c", root, "serve", "-h", "127.0.0.1", "-p", port, "--max-requests", "0"])


def main() -> None:
    command, data_dir = sys.argv[1], sys.argv[2]
    if command == "serve":
        serve(data_dir, sys.argv[3], *(sys.argv[4:5] or ["sqlite"]))
        return
    if command == "historical":
        result = historical(data_dir, sys.argv[3], visible="--visible" in sys.argv[4:])
    elif command == "online":
        result = online(data_dir, sys.argv[3], sys.argv[4], sys.argv[5], *(sys.argv[6:7] or ["sqlite"]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    import feast

    result["feast_version"] = feast.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
