"""Feast's side of the benchmarks, run with Feast's own virtualenv (see bench/README.md).

    <feast-python> bench/feast_side.py historical DATA_DIR OUT.parquet
    <feast-python> bench/feast_side.py materialize DATA_DIR
    <feast-python> bench/feast_side.py online DATA_DIR       (after materialize)

Prints one JSON line with the measured seconds (and latencies for ``online``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time

FEATURES = ["txn_count_1h", "txn_count_24h", "amount_sum_1h", "amount_avg_24h", "amount_max_24h",
            "distinct_merchants_24h", "foreign_share_7d", "declines_24h", "is_new_device", "last_country"]


ONLINE = os.environ.get("FEAST_ONLINE", "sqlite")  # or "redis" (127.0.0.1:6379, db 1)


def repo(data_dir: str):  # type: ignore[no-untyped-def]
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Bool, Float64, Int64, String

    root = os.path.join(data_dir, "feast_repo")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "feature_store.yaml"), "w") as fh:
        fh.write(
            "project: bench\nprovider: local\nregistry: registry.db\n"
            "offline_store:\n  type: duckdb\n"
            + ("online_store:\n  type: redis\n  connection_string: 127.0.0.1:6379,db=1\n" if ONLINE == "redis"
               else "online_store:\n  type: sqlite\n  path: online.db\n") +
            "entity_key_serialization_version: 3\n"
        )
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(path=os.path.abspath(os.path.join(data_dir, "rows.parquet")), timestamp_field="event_ts",
                        created_timestamp_column="created_ts")
    types = {"txn_count_1h": Int64, "txn_count_24h": Int64, "distinct_merchants_24h": Int64, "declines_24h": Int64,
             "is_new_device": Bool, "last_country": String}
    view = FeatureView(name="user_stats", entities=[user], ttl=dt.timedelta(days=3650), source=source,
                       schema=[Field(name=f, dtype=types.get(f, Float64)) for f in FEATURES])
    store = FeatureStore(repo_path=root)
    store.apply([user, view])
    return store


def historical(data_dir: str, out: str) -> dict[str, float]:
    import pyarrow.parquet as pq

    store = repo(data_dir)
    spine = pq.read_table(os.path.join(data_dir, "spine.parquet")).to_pandas()
    spine["row_id"] = range(len(spine))
    spine = spine.rename(columns={"ts": "event_timestamp"})
    started = time.perf_counter()
    table = store.get_historical_features(entity_df=spine, features=[f"user_stats:{f}" for f in FEATURES]).to_arrow()
    seconds = time.perf_counter() - started
    pq.write_table(table, out)
    return {"seconds": seconds, "rows": table.num_rows}


def materialize(data_dir: str) -> dict[str, float]:
    store = repo(data_dir)
    started = time.perf_counter()
    store.materialize(start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
                      end_date=dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc))
    return {"seconds": time.perf_counter() - started}


def online(data_dir: str, iterations: int = 2000) -> dict[str, float]:
    import random

    store = repo(data_dir)
    refs = [f"user_stats:{f}" for f in FEATURES]
    rng = random.Random(1)
    out: dict[str, float] = {}
    for batch in (1, 100):
        lat = []
        for i in range(iterations + 200):
            rows = [{"user_id": rng.randrange(10_000)} for _ in range(batch)]
            started = time.perf_counter()
            store.get_online_features(features=refs, entity_rows=rows).to_dict()
            if i >= 200:
                lat.append(time.perf_counter() - started)
        lat.sort()
        out[f"p50_{batch}"] = lat[len(lat) // 2] * 1e6
        out[f"p99_{batch}"] = lat[int(len(lat) * 0.99)] * 1e6
    return out


if __name__ == "__main__":
    command, data_dir = sys.argv[1], sys.argv[2]
    shutil.rmtree(os.path.join(data_dir, "feast_repo"), ignore_errors=True) if command != "online" else None
    if command == "historical":
        result = historical(data_dir, sys.argv[3])
    elif command == "materialize":
        result = materialize(data_dir)
    else:
        result = online(data_dir)
    print(json.dumps(result))
