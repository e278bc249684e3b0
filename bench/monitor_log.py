"""`parity monitor`'s own path over a served-value log (figures go to bench/RESULTS.md).

    .venv/bin/python bench/monitor_log.py [--rows 1000000]

A project with a numeric and a string feature and a training-set baseline; ``--rows`` logged rows
(one entity each, in the log's JSON shape) served over 24 hours; ``watch_log`` timed end to end:
decoding every value by its dtype, 24 hourly profiles per feature, drift and null checks, the
points recorded. Healthy data: every bucket must stay quiet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine

import parity as pt
from parity.connectors.feature_log_parquet import SCHEMA
from parity.registry.versions import Versions
from parity.runtime.monitoring import HOUR_US, watch_log

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
START_US = int(dt.datetime(2024, 2, 1, tzinfo=dt.UTC).timestamp() * 1e6)
USERS = 100_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        pl.DataFrame({"user_id": np.arange(USERS), "ts": [BASE] * USERS, "x": rng.normal(0, 1, USERS),
                      "c": rng.choice(["a", "b", "c"], USERS)}).write_parquet(os.path.join(root, "u.parquet"))
        user = pt.Entity("user", keys={"user_id": pt.Int64})
        view = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                              features=[pt.Feature("x", pt.Float64), pt.Feature("c", pt.String)])
        with pt.Project.from_definitions([user, view], root=root, online_store_path=os.path.join(root, "o.db"),
                                         record_baselines=True,
                                         monitor_path=os.path.join(root, "monitor.db")) as project:
            spine = pl.DataFrame({"user_id": np.arange(USERS), "timestamp": [BASE + dt.timedelta(days=1)] * USERS})
            project.training_set(spine, ["user.x", "user.c"])
            versions = orjson.dumps({r: Versions(project.catalog).version(
                project.catalog.feature_at(project.catalog.parse(r))) for r in ("user.x", "user.c")}).decode()
            n = args.rows
            values = pl.DataFrame({"user.x": rng.normal(0, 1, n), "user.c": rng.choice(["a", "b", "c"], n)}).select(
                pl.struct("user.x", "user.c").struct.json_encode().alias("v"))["v"]
            served = START_US + np.arange(n, dtype=np.int64) * (24 * HOUR_US // n)
            log = pa.table({"request_id": pa.array(np.arange(n).astype(str)), "request_time_us": served,
                            "served_at_us": served, "principal": pa.nulls(n, pa.string()), "row": np.zeros(n, np.int32),
                            "entity": pa.array(['{"user_id":1}'] * n), "values": values.to_arrow(),
                            "statuses": pa.nulls(n, pa.string()), "versions": pa.array([versions] * n)}, schema=SCHEMA)
            started = time.perf_counter()
            run = watch_log(project, log)
            elapsed = time.perf_counter() - started
    print(f"machine: {machine()}")
    print(f"{n:,} logged rows x 2 features, {len(run.watches[0].windows)} hourly buckets: watch_log {elapsed:.2f} s "
          f"= {n / elapsed:,.0f} logged rows/s; statuses {({w.feature: w.status for w in run.watches})}")


if __name__ == "__main__":
    main()
