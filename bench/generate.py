"""Fraud-style benchmark data: per-user transaction aggregates (10 features) and a labelled spine.

    .venv/bin/python bench/generate.py small|medium|large [--force]

Writes ``bench/data/fraud-<size>/``:

* ``feature_rows.parquet`` — user_id, event_ts, created_ts (timestamp[us, UTC]) and 10 features
  (4 Int64, 4 Float64, 1 Bool, 1 String; 1-3 % nulls in six of them), in ingestion order (sorted
  by created_ts within each time slice, like an append-only log). Written chunk by chunk with one
  ParquetWriter, so memory stays bounded at any size.
* ``spine.parquet`` — user_id, ts (timestamp[us, UTC]), label (bool), shuffled.
* ``meta.json`` — sizes, seed, time range, tie counts.

Sizes (users / feature rows / spine rows): small 10k / 1M / 100k, medium 100k / 10M / 1M,
large 1M / 100M / 10M.

Realism and the cases that break naive joins, all deterministic (seed 20250101):

* user activity is skewed (log-normal weights, sigma 1.1: the busiest 1 % of users hold ~11 % of
  rows, the busiest 10 % ~43 %; ``--users uniform`` gives every user the same rate), event times have 1-second resolution;
* created_ts = event_ts + an ingestion delay: ~95 % a few seconds, ~4 % minutes, ~1 % late
  backfills of hours to 3 days;
* ~3 % of rows repeat an earlier row's (user_id, event_ts) with new values (corrections): about a
  third of those also repeat its created_ts exactly (a full tie: only the row order decides), the
  rest arrive later or earlier;
* spine rows: ~70 % at random times (some before a user's first row, ~1 % unknown users), ~15 %
  exactly at a feature row's event_ts (the ``<=`` edge), ~15 % strictly between a row's event_ts
  and its created_ts (where event-time and created-time visibility disagree).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SIZES = {
    "small": (10_000, 1_000_000, 100_000),
    "medium": (100_000, 10_000_000, 1_000_000),
    "large": (1_000_000, 100_000_000, 10_000_000),
}
SEED = 20250101
T0 = int(np.datetime64("2025-01-01T00:00:00", "s").astype(np.int64))  # Unix seconds
SPAN_S = 180 * 86400
CHUNK_ROWS = 2_000_000
DUP_SHARE = 0.03
FEATURES = {  # name -> parity / Feast dtype name
    "txn_count_1h": "Int64",
    "txn_count_24h": "Int64",
    "amount_sum_1h": "Float64",
    "amount_avg_24h": "Float64",
    "amount_max_24h": "Float64",
    "distinct_merchants_24h": "Int64",
    "foreign_share_7d": "Float64",
    "declines_24h": "Int64",
    "is_new_device": "Bool",
    "last_country": "String",
}
COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN", "NG", "ES"])
COUNTRY_P = np.array([0.40, 0.12, 0.12, 0.10, 0.09, 0.08, 0.04, 0.05])
TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("event_ts", TS), ("created_ts", TS)]
    + [(name, {"Int64": pa.int64(), "Float64": pa.float64(), "Bool": pa.bool_(), "String": pa.string()}[d])
       for name, d in FEATURES.items()]
)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


DISTS = ("skewed", "uniform")


def data_dir(size: str, dist: str = "skewed") -> str:
    return os.path.join(DATA, f"fraud-{size}" + ("" if dist == "skewed" else f"-{dist}"))


def _user_cdf(rng: np.random.Generator, users: int, dist: str) -> np.ndarray:
    weights = rng.lognormal(0.0, 1.1, users)
    if dist == "uniform":
        weights = np.ones(users)
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _users(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1).astype(np.int64)


def _delays_us(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.random(n)
    ms = rng.exponential(1500.0, n).astype(np.int64)  # usual stream lag: about 1.5 s
    ms = np.where(kind > 0.95, rng.integers(60_000, 3_600_000, n), ms)  # minutes
    ms = np.where(kind > 0.99, rng.integers(3_600_000, 3 * 86_400_000, n), ms)  # late backfills
    return ms * 1000


def _masked(values: np.ndarray, rng: np.random.Generator, share: float) -> pa.Array:
    return pa.array(values, mask=rng.random(len(values)) < share)


def _features(rng: np.random.Generator, n: int) -> dict[str, pa.Array]:
    avg = np.round(rng.lognormal(3.4, 1.0, n), 2)
    country = pa.DictionaryArray.from_arrays(
        pa.array(rng.choice(len(COUNTRIES), n, p=COUNTRY_P).astype(np.int32), mask=rng.random(n) < 0.02),
        pa.array(COUNTRIES.tolist()),
    ).cast(pa.string())
    return {
        "txn_count_1h": pa.array(rng.poisson(1.2, n).astype(np.int64)),
        "txn_count_24h": pa.array(rng.poisson(9.0, n).astype(np.int64)),
        "amount_sum_1h": _masked(np.round(avg * rng.uniform(0.5, 4.0, n), 2), rng, 0.03),
        "amount_avg_24h": pa.array(avg),
        "amount_max_24h": _masked(np.round(avg * rng.uniform(1.0, 3.0, n), 2), rng, 0.01),
        "distinct_merchants_24h": _masked(rng.integers(1, 25, n).astype(np.int64), rng, 0.02),
        "foreign_share_7d": pa.array(rng.beta(0.5, 5.0, n)),
        "declines_24h": _masked(rng.poisson(0.15, n).astype(np.int64), rng, 0.01),
        "is_new_device": _masked(rng.random(n) < 0.04, rng, 0.01),
        "last_country": country,
    }


def _chunk(rng: np.random.Generator, cdf: np.ndarray, n: int, t_lo: int, t_hi: int) -> tuple[pa.Table, dict[str, int]]:
    """``n`` rows with event times in [t_lo, t_hi) seconds, in ingestion (created) order."""
    n_dup = int(n * DUP_SHARE)
    n_base = n - n_dup
    user = _users(rng, cdf, n_base)
    event = (t_lo + rng.integers(0, t_hi - t_lo, n_base)) * 1_000_000
    created = event + _delays_us(rng, n_base)
    # Corrections: same user and event time as an earlier row, new values.
    src = rng.integers(0, n_base, n_dup)
    kind = rng.random(n_dup)
    d_created = np.where(
        kind < 0.35,
        created[src],  # full tie on (event, created): ingestion order decides
        np.where(
            kind < 0.80,
            created[src] + rng.integers(1, 600_000, n_dup) * 1000,  # arrives later
            event[src] + ((created[src] - event[src]) * rng.random(n_dup)).astype(np.int64),  # earlier
        ),
    )
    user = np.concatenate([user, user[src]])
    event = np.concatenate([event, event[src]])
    created = np.concatenate([created, d_created])
    # Ingestion order: by created time (stable, so a full-tie correction lands after its original).
    order = np.argsort(created, kind="stable")
    feats = _features(rng, n)
    cols = {"user_id": pa.array(user[order]), "event_ts": pa.array(event[order], TS), "created_ts": pa.array(created[order], TS)}
    idx = pa.array(order)
    cols.update({k: v.take(idx) for k, v in feats.items()})
    stats = {"corrections": n_dup, "full_tie_corrections": int((kind < 0.35).sum())}
    return pa.table(cols, schema=SCHEMA), stats


def generate(size: str, force: bool = False, dist: str = "skewed") -> str:
    users, n_rows, n_spine = SIZES[size]
    out = data_dir(size, dist)
    rows_path, spine_path, meta_path = (os.path.join(out, f) for f in ("feature_rows.parquet", "spine.parquet", "meta.json"))
    if not force and all(os.path.exists(p) for p in (rows_path, spine_path, meta_path)):
        return out
    os.makedirs(out, exist_ok=True)
    started = time.time()
    rng = np.random.default_rng(SEED)
    cdf = _user_cdf(rng, users, dist)
    n_chunks = max(1, -(-n_rows // CHUNK_ROWS))
    bounds = np.linspace(T0, T0 + SPAN_S, n_chunks + 1).astype(np.int64)
    # Spine rows anchored on real feature rows are sampled from each chunk as it is written.
    n_anchor = int(n_spine * 0.30)
    anchors: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    stats = {"corrections": 0, "full_tie_corrections": 0}
    tmp = rows_path + ".tmp"
    with pq.ParquetWriter(tmp, SCHEMA, compression="snappy") as writer:
        written = 0
        for i in range(n_chunks):
            n = min(CHUNK_ROWS, n_rows - written)
            table, st = _chunk(rng, cdf, n, int(bounds[i]), int(bounds[i + 1]))
            for k, v in st.items():
                stats[k] += v
            writer.write_table(table, row_group_size=1_000_000)
            k = round(n_anchor * n / n_rows)
            pick = rng.integers(0, n, k)
            anchors.append((
                table["user_id"].to_numpy()[pick],
                table["event_ts"].cast(pa.int64()).to_numpy()[pick],
                table["created_ts"].cast(pa.int64()).to_numpy()[pick],
            ))
            written += n
            print(f"  {size}: {written:,}/{n_rows:,} rows", file=sys.stderr, end="\r")
    os.replace(tmp, rows_path)
    print(file=sys.stderr)

    a_user = np.concatenate([a[0] for a in anchors])
    a_event = np.concatenate([a[1] for a in anchors])
    a_created = np.concatenate([a[2] for a in anchors])
    n_a = len(a_user)
    half = n_a // 2
    # Half exactly at the event time; half strictly inside (event, created) when there is room.
    gap = np.maximum(a_created[half:] - a_event[half:], 1)
    inside = a_event[half:] + (rng.random(n_a - half) * gap).astype(np.int64)
    anchor_ts = np.concatenate([a_event[:half], inside])
    n_rand = n_spine - n_a
    rand_user = _users(rng, cdf, n_rand)
    unknown = rng.random(n_rand) < 0.01
    rand_user = np.where(unknown, users + rng.integers(0, max(users // 100, 1), n_rand), rand_user)
    rand_ts = (T0 - 2 * 86400) * 1_000_000 + rng.integers(0, (SPAN_S + 4 * 86400) * 1_000_000, n_rand)
    user = np.concatenate([a_user, rand_user])
    ts = np.concatenate([anchor_ts, rand_ts])
    order = rng.permutation(n_spine)
    label = rng.random(n_spine) < 0.02
    spine = pa.table({"user_id": pa.array(user[order]), "ts": pa.array(ts[order], TS), "label": pa.array(label)})
    pq.write_table(spine, spine_path, row_group_size=1_000_000)

    meta = {
        "size": size, "users_distribution": dist, "seed": SEED, "users": users, "feature_rows": n_rows, "spine_rows": n_spine,
        "event_ts_from": str(np.datetime64(T0, "s")), "event_ts_to": str(np.datetime64(T0 + SPAN_S, "s")),
        "max_created_ts_upper_bound": str(np.datetime64(T0 + SPAN_S + 4 * 86400, "s")),
        "features": FEATURES, "spine_at_event_ts": half, "spine_between_event_and_created": n_a - half,
        **stats, "seconds": round(time.time() - started, 1),
    }
    with open(meta_path, "w") as fh:
        json.dump(meta, fh, indent=1)
    print(f"generated {size} in {meta['seconds']}s -> {out}", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="+", choices=sorted(SIZES))
    parser.add_argument("--force", action="store_true", help="regenerate even if the files exist")
    parser.add_argument("--users", choices=DISTS, default="skewed",
                        help="activity per user: log-normal (default) or uniform (-> bench/data/fraud-<size>-uniform)")
    args = parser.parse_args()
    for size in args.sizes:
        generate(size, force=args.force, dist=args.users)


if __name__ == "__main__":
    main()
