"""Profiles and drift over logged values (figures go to bench/RESULTS.md).

    .venv/bin/python bench/monitor.py [--rows 10000000]

Rows shaped as the served-value log keeps them (one JSON object of values per entity, a request
time each), spread over 24 hours: a numeric feature (an amount, drifting by +0.3 σ in the last
6 hours) and a string feature (a merchant of 50,000, Zipf-distributed). Timed, one step at a time:
decoding the feature's values out of the JSON column (Polars, vectorised), counting them into
hourly profiles on the baseline's fixed bins, merging the 24 hours into a day, and the 24 hourly
drift checks against the baseline (a training set of 1M rows) — with which hours were found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import polars as pl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402
from parity.monitor.bins import Bins  # noqa: E402
from parity.monitor.drift import drift  # noqa: E402
from parity.monitor.profile import Profile, profile, profile_buckets  # noqa: E402

HOUR_US = 3_600_000_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.rows
    hours = np.sort(rng.integers(0, 24, n))
    amount = rng.normal(50.0, 10.0, n) + np.where(hours >= 18, 3.0, 0.0)  # +0.3 σ in the last 6 hours
    merchant = np.char.add("m", (rng.zipf(1.3, n) % 50_000).astype(str))
    t0 = time.perf_counter()
    values = pl.DataFrame({"a": amount, "m": merchant}).select(
        pl.struct("a", "m").struct.json_encode().alias("values"))["values"]
    built = time.perf_counter() - t0
    log = pl.DataFrame({"request_time_us": hours * HOUR_US + rng.integers(0, HOUR_US, n), "values": values})

    baseline = pl.DataFrame({"a": rng.normal(50.0, 10.0, 1_000_000),
                             "m": np.char.add("m", (rng.zipf(1.3, 1_000_000) % 50_000).astype(str))})
    timings: dict[str, float] = {}
    found: dict[str, list[int]] = {}
    for feature, dtype, cast in (("a", "Float64", pl.Float64), ("m", "String", pl.String)):
        t = time.perf_counter()
        bins = Bins.from_baseline(baseline[feature], dtype)
        base = profile(baseline[feature], bins)
        timings[f"{feature}: baseline bins + profile (1M)"] = time.perf_counter() - t
        t = time.perf_counter()
        decoded = log["values"].str.json_path_match(f"$.{feature}").cast(cast)
        timings[f"{feature}: decode from the log ({n:,})"] = time.perf_counter() - t
        t = time.perf_counter()
        bucket = (log["request_time_us"] // HOUR_US).to_numpy()
        hourly = profile_buckets(decoded, bucket, 24, bins)
        timings[f"{feature}: 24 hourly profiles ({n:,})"] = time.perf_counter() - t
        t = time.perf_counter()
        day = Profile()
        for hour in hourly:
            day = day.merge(hour)
        timings[f"{feature}: merge 24 hours into a day"] = time.perf_counter() - t
        assert day.counts.tolist() == profile(decoded, bins).counts.tolist()
        t = time.perf_counter()
        results = [drift(bins, base, hour) for hour in hourly]
        timings[f"{feature}: 24 drift checks"] = time.perf_counter() - t
        found[feature] = [h for h, r in enumerate(results) if r.status == "drift"]
    total = sum(timings.values())
    print(json.dumps({"machine": machine(), "rows": n, "building the JSON column (not timed below)": built,
                      "seconds": timings, "total_seconds": total, "rows_per_second_per_feature": 2 * n / total,
                      "drifted_hours": found}, indent=2))


if __name__ == "__main__":
    main()
