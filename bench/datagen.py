"""Fraud-style benchmark data: per-user transaction aggregates (10 features) and a labelled spine.

Sizes: small = 10k users / 1M feature rows / 100k spine rows; medium = 100k / 10M / 1M;
large = 1M / 100M / 10M. Event times are whole seconds (so ties happen), created times trail
them by up to an hour, about 2% of values are null. Deterministic.

    python bench/datagen.py medium       # writes bench/data/medium/{rows,spine}.parquet
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import polars as pl

SIZES = {"small": (10_000, 1_000_000, 100_000), "medium": (100_000, 10_000_000, 1_000_000),
         "large": (1_000_000, 100_000_000, 10_000_000)}
START = np.datetime64("2025-01-01T00:00:00", "s").astype(np.int64)
SPAN = 90 * 86400  # seconds
CHUNK = 10_000_000


def _rows(rng: np.random.Generator, users: int, n: int) -> pl.DataFrame:
    ev = START + rng.integers(0, SPAN, n)
    cr = ev + rng.integers(0, 3600, n)
    amount = rng.lognormal(3.3, 1.0, n)
    nulls = rng.random(n) < 0.02
    return pl.DataFrame({
        "user_id": rng.integers(0, users, n),
        "event_ts": (ev * 1_000_000), "created_ts": (cr * 1_000_000),
        "txn_count_1h": rng.poisson(1.5, n), "txn_count_24h": rng.poisson(12, n),
        "amount_sum_1h": np.where(nulls, np.nan, amount * 1.5), "amount_avg_24h": amount,
        "amount_max_24h": amount * rng.uniform(1, 3, n), "distinct_merchants_24h": rng.integers(1, 20, n),
        "foreign_share_7d": rng.random(n), "declines_24h": rng.poisson(0.2, n),
        "is_new_device": rng.random(n) < 0.05, "last_country": rng.choice(["DE", "FR", "US", "BR", "GB"], n),
    }).with_columns(
        pl.col("event_ts").cast(pl.Datetime("us", "UTC")), pl.col("created_ts").cast(pl.Datetime("us", "UTC")),
        pl.when(pl.Series(nulls)).then(None).otherwise(pl.col("amount_sum_1h")).alias("amount_sum_1h"),
    )


FEATURES = ["txn_count_1h", "txn_count_24h", "amount_sum_1h", "amount_avg_24h", "amount_max_24h",
            "distinct_merchants_24h", "foreign_share_7d", "declines_24h", "is_new_device", "last_country"]


def generate(size: str, root: str) -> str:
    users, n_rows, n_spine = SIZES[size]
    out = os.path.join(root, size)
    os.makedirs(out, exist_ok=True)
    rows_path = os.path.join(out, "rows.parquet")
    if os.path.exists(rows_path) and os.path.exists(os.path.join(out, "spine.parquet")):
        return out
    rng = np.random.default_rng(42)
    started = time.time()
    if n_rows <= CHUNK:
        _rows(rng, users, n_rows).write_parquet(rows_path, row_group_size=1_000_000)
    else:
        os.makedirs(rows_path)
        for i in range(0, n_rows, CHUNK):
            _rows(rng, users, min(CHUNK, n_rows - i)).write_parquet(os.path.join(rows_path, f"part-{i // CHUNK:04d}.parquet"))
    spine_ts = (START + rng.integers(3600, SPAN + 86400, n_spine)) * 1_000_000
    pl.DataFrame({"user_id": rng.integers(0, users + users // 100, n_spine),  # 1% unknown users
                  "ts": spine_ts, "label": rng.random(n_spine) < 0.02}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC"))).write_parquet(os.path.join(out, "spine.parquet"))
    print(f"generated {size} in {time.time() - started:.1f}s -> {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    generate(sys.argv[1] if len(sys.argv) > 1 else "small", os.path.join(os.path.dirname(__file__), "data"))
