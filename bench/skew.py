"""Skew replay rate: logged online requests replayed through the offline engine (``parity skew``).

    .venv/bin/python bench/skew.py [--users 100000] [--rows 200000]

A project of ``--users`` users (a Parquet source, two rows each with distinct payloads: a float,
a string, a timestamp; and a Python resolver over the float) is materialized; then 1% of the users
get a newer row that is not materialized (a planted skew: the online store is behind). Queries of
100 entities each are answered with the served-value log at a sample rate of 1, until ``--rows``
entities are logged. The replay of the whole log (no sampling) is timed, split into reading the log
and the rest (training sets, comparison, causes), and its mismatches are checked against the plant:
every logged row of a planted user, on each of its 4 features, caused ``store_behind``; nothing else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time

import numpy as np
import polars as pl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine

import parity as pt
from parity.connectors.feature_log_parquet import ParquetFeatureLog

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FEATURES = ["user.score", "user.tier", "user.seen", "user.double"]


def definitions() -> list[object]:
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    profile = pt.FeatureView("profile", entity=user,
                             source=pt.ParquetSource("profile", path="profile.parquet", event_time="ts"),
                             features=[pt.Feature("score", pt.Float64), pt.Feature("tier", pt.String),
                                       pt.Feature("seen", pt.Timestamp)])

    @pt.resolver(entity=user, outputs=pt.Feature("double", pt.Float64))
    def double(score: float) -> float:
        return score * 2

    return [user, profile, double]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ids = np.arange(1, args.users + 1)
    with tempfile.TemporaryDirectory() as root:
        def rows(day: int, offset: float) -> pl.DataFrame:
            return pl.DataFrame({"user_id": ids, "ts": [T0 + dt.timedelta(days=day)] * len(ids),
                                 "score": ids * 1.5 + offset, "tier": [f"t{i}-{day}" for i in ids],
                                 "seen": [T0 + dt.timedelta(days=day, seconds=int(i)) for i in ids]})
        history = pl.concat([rows(0, 0.25), rows(1, 0.5)])
        history.write_parquet(os.path.join(root, "profile.parquet"))
        project = pt.Project.from_definitions(definitions(), root=root, online_store_path=os.path.join(root, "o.db"),
                                              feature_log_sample_rate=1.0)
        project.materialize(until=T0 + dt.timedelta(days=2), incremental=False)
        planted = np.sort(rng.choice(ids, size=max(1, args.users // 100), replace=False))
        newer = rows(3, 0.75).filter(pl.col("user_id").is_in(planted.tolist()))
        pl.concat([history, newer]).write_parquet(os.path.join(root, "profile.parquet"))
        now = T0 + dt.timedelta(days=4)
        logged = 0
        started = time.perf_counter()
        while logged < args.rows:
            batch = rng.choice(ids, size=min(100, args.rows - logged), replace=False)
            project.query({"user_id": batch.tolist()}, FEATURES, now=now)
            logged += len(batch)
        served = time.perf_counter() - started
        project.close()
        t = time.perf_counter()
        log = ParquetFeatureLog(root).read()
        read = time.perf_counter() - t
        frame = pl.from_arrow(log)
        assert isinstance(frame, pl.DataFrame)
        planted_rows = frame.filter(pl.col("entity").str.json_path_match("$.user_id").cast(pl.Int64)
                                    .is_in(planted.tolist())).height
        with pt.Project.from_definitions(definitions(), root=root,
                                         online_store_path=os.path.join(root, "o.db")) as replayer:
            t = time.perf_counter()
            report = replayer.skew(sample=None)
            total = time.perf_counter() - t
        causes = {ref: dict(f.causes) for ref, f in report.features.items()}
        expected = {ref: {"store_behind": planted_rows} for ref in FEATURES}
        print(f"machine: {machine()}")
        print(f"{args.users:,} users, {log.num_rows:,} logged rows ({logged // 100:,} queries of 100 entities, "
              f"served in {served:.1f} s), {len(planted):,} users planted behind ({planted_rows:,} logged rows)")
        print(f"replay: {report.rows:,} rows x {len(FEATURES)} features in {total:.2f} s = "
              f"{report.rows / total:,.0f} logged rows/s ({report.rows * len(FEATURES) / total:,.0f} values/s); "
              f"reading the log {read:.2f} s")
        print(f"mismatches {report.mismatches:,}, causes {causes}")
        print("planted skew found exactly" if causes == expected else f"MISMATCH: expected {expected}")


if __name__ == "__main__":
    main()
