"""Generate the example's data: users, cards, merchants, transactions and fraud labels.

Deterministic for a seed. Fraud is more likely for new accounts paying large amounts abroad at
risky merchants, so the features carry real signal. Usage: ``python generate.py [--users N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import sqlite3

import duckdb
import polars as pl

UTC = dt.timezone.utc
START = dt.datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 60
COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "SE", "US", "GB", "BR"]
CATEGORIES = ["grocery", "fuel", "travel", "electronics", "gaming", "fashion", "restaurants", "crypto"]


def generate(out: str, users: int = 2000, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    os.makedirs(os.path.join(out, "transactions"), exist_ok=True)

    # Users: a profile row at signup, then corrections that reach the warehouse late.
    user_rows = []
    signup = {}
    home = {}
    for uid in range(1, users + 1):
        signup[uid] = START - dt.timedelta(days=rng.uniform(0, 900))
        home[uid] = rng.choices(COUNTRIES, weights=[30, 15, 10, 10, 8, 7, 5, 6, 6, 3])[0]
        limit = float(rng.choice([500, 1000, 2000, 5000]))
        first_seen = max(signup[uid], START - dt.timedelta(days=30))
        user_rows.append((uid, first_seen, first_seen + dt.timedelta(minutes=rng.uniform(1, 90)), home[uid],
                          signup[uid], limit, rng.randint(0, 3), f"user{uid}@example.org"))
        for _ in range(rng.choice([0, 0, 1, 2])):
            at = START + dt.timedelta(days=rng.uniform(0, DAYS))
            limit = float(rng.choice([500, 1000, 2000, 5000, 10000]))
            user_rows.append((uid, at, at + dt.timedelta(hours=rng.expovariate(1 / 18)), home[uid], signup[uid],
                              limit, rng.randint(0, 3), None if rng.random() < 0.05 else f"user{uid}@example.org"))
    pl.DataFrame(
        user_rows,
        schema={"user_id": pl.Int64, "updated_at": pl.Datetime("us", "UTC"), "ingested_at": pl.Datetime("us", "UTC"),
                "country": pl.String, "signup_at": pl.Datetime("us", "UTC"), "credit_limit": pl.Float64,
                "kyc_level": pl.Int64, "email": pl.String},
        orient="row",
    ).write_parquet(os.path.join(out, "users.parquet"))

    # Merchants in SQLite (ISO-8601 text timestamps, as many operational databases keep them).
    n_merchants = max(50, users // 8)
    merchant_rows = []
    merchant_country = {}
    merchant_risk = {}
    for mid in range(1, n_merchants + 1):
        merchant_country[mid] = rng.choice(COUNTRIES)
        category = rng.choice(CATEGORIES)
        merchant_risk[mid] = min(1.0, rng.betavariate(2, 6) + (0.35 if category in ("crypto", "gaming") else 0))
        merchant_rows.append((mid, f"merchant {mid}", category, merchant_country[mid], round(merchant_risk[mid], 3),
                              (START - dt.timedelta(days=120)).isoformat()))
    path = os.path.join(out, "merchants.sqlite")
    if os.path.exists(path):
        os.remove(path)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE merchants (merchant_id INTEGER, name TEXT, category TEXT, country TEXT, "
                "risk_score REAL, updated_at TEXT)")
    con.executemany("INSERT INTO merchants VALUES (?, ?, ?, ?, ?, ?)", merchant_rows)
    con.commit()
    con.close()

    # Cards in DuckDB: one to three per user.
    card_rows = []
    cards_of: dict[int, list[tuple[str, dt.datetime]]] = {}
    for uid in range(1, users + 1):
        for k in range(rng.choice([1, 1, 2, 3])):
            issued = max(signup[uid], START - dt.timedelta(days=rng.uniform(0, 700)))
            if k and rng.random() < 0.3:
                issued = START + dt.timedelta(days=rng.uniform(0, DAYS - 5))  # a card issued during the period
            cid = f"c{uid:06d}{k}"
            cards_of.setdefault(uid, []).append((cid, issued))
            card_rows.append((cid, uid, issued, rng.choice(["debit", "credit", "prepaid"]), rng.random() < 0.2, issued))
    path = os.path.join(out, "cards.duckdb")
    if os.path.exists(path):
        os.remove(path)
    cards = pl.DataFrame(card_rows, schema={"card_id": pl.String, "user_id": pl.Int64, "issued_at": pl.Datetime("us", "UTC"),
                                            "card_type": pl.String, "is_virtual": pl.Boolean,
                                            "updated_at": pl.Datetime("us", "UTC")}, orient="row")
    with duckdb.connect(path, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}) as dcon:
        dcon.register("cards_frame", cards.to_arrow())
        dcon.execute("CREATE TABLE cards AS SELECT * FROM cards_frame")

    # Transactions, one Parquet file per week; fraud labels from a hidden risk model.
    txns = []
    labels = []
    tid = 0
    for uid in range(1, users + 1):
        rate = rng.uniform(0.2, 3.0)  # payments a day
        favourites = [rng.randint(1, n_merchants) for _ in range(4)]
        t = START + dt.timedelta(hours=rng.uniform(0, 24))
        while True:
            t += dt.timedelta(days=rng.expovariate(rate))
            if t >= START + dt.timedelta(days=DAYS):
                break
            usable = [c for c in cards_of[uid] if c[1] <= t] or cards_of[uid][:1]
            card_id, issued = rng.choice(usable)
            mid = rng.choice(favourites) if rng.random() < 0.7 else rng.randint(1, n_merchants)
            amount = round(math.exp(rng.gauss(3.3, 1.0)), 2)
            online = rng.random() < 0.4
            account_days = (t - signup[uid]).days
            score = -5.5 + 1.6 * (merchant_country[mid] != home[uid]) + 1.2 * (amount > 150) \
                + 1.0 * (account_days < 60) + 2.0 * merchant_risk[mid] + 0.6 * online + 0.8 * ((t - issued).days < 7)
            fraud = rng.random() < 1 / (1 + math.exp(-score))
            tid += 1
            txn_id = f"t{tid:08d}"
            txns.append((txn_id, uid, card_id, mid, amount, online, t))
            labels.append((txn_id, t, fraud))
    frame = pl.DataFrame(txns, schema={"transaction_id": pl.String, "user_id": pl.Int64, "card_id": pl.String,
                                       "merchant_id": pl.Int64, "amount": pl.Float64, "is_online": pl.Boolean,
                                       "ts": pl.Datetime("us", "UTC")}, orient="row").sort("ts")
    week = ((pl.col("ts") - pl.lit(START)).dt.total_days() // 7).alias("week")
    for (w,), part in frame.with_columns(week).group_by("week", maintain_order=True):
        part.drop("week").write_parquet(os.path.join(out, "transactions", f"part-{int(w):03d}.parquet"))
    pl.DataFrame(labels, schema={"transaction_id": pl.String, "timestamp": pl.Datetime("us", "UTC"),
                                 "is_fraud": pl.Boolean}, orient="row").sort("timestamp").write_parquet(
        os.path.join(out, "labels.parquet"))

    # Daily aggregates per user and per (user, merchant), computed at each day's end.
    day = pl.col("ts").dt.truncate("1d")
    daily = frame.with_columns(day.alias("day"))
    stats = []
    for offset in range(DAYS):
        day_end = START + dt.timedelta(days=offset + 1)
        w7 = daily.filter((pl.col("ts") < day_end) & (pl.col("ts") >= day_end - dt.timedelta(days=7)))
        w30 = daily.filter((pl.col("ts") < day_end) & (pl.col("ts") >= day_end - dt.timedelta(days=30)))
        agg30 = w30.join(pl.DataFrame({"merchant_id": list(merchant_country), "mc": list(merchant_country.values())}),
                         on="merchant_id").group_by("user_id").agg(
            pl.col("amount").mean().alias("amount_avg_30d"),
            pl.col("mc").unique().sort().alias("countries_30d"),
            pl.col("day").max().dt.date().alias("last_active_day"),
        )
        agg7 = w7.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("txn_count_7d"),
                                          pl.col("amount").sum().alias("amount_sum_7d"))
        stats.append(agg30.join(agg7, on="user_id", how="left").with_columns(
            pl.lit(day_end).dt.replace_time_zone("UTC").alias("day_end"),
            pl.col("txn_count_7d").fill_null(0), pl.col("amount_sum_7d").fill_null(0.0)))
    pl.concat(stats).select("user_id", "day_end", "txn_count_7d", "amount_sum_7d", "amount_avg_30d",
                            "countries_30d", "last_active_day").write_parquet(os.path.join(out, "user_daily_stats.parquet"))
    pairs = []
    for offset in range(0, DAYS, 1):
        day_end = START + dt.timedelta(days=offset + 1)
        w90 = daily.filter((pl.col("ts") < day_end) & (pl.col("ts") >= day_end - dt.timedelta(days=90)))
        pairs.append(w90.group_by("user_id", "merchant_id").agg(pl.len().cast(pl.Int64).alias("txn_count_90d"))
                     .with_columns(pl.lit(day_end).dt.replace_time_zone("UTC").alias("day_end")))
    pl.concat(pairs).select("user_id", "merchant_id", "day_end", "txn_count_90d").write_parquet(
        os.path.join(out, "user_merchant_daily.parquet"))
    return {"users": users, "cards": len(card_rows), "merchants": n_merchants, "transactions": len(txns),
            "fraud": sum(1 for _, _, f in labels if f)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(generate(args.out, args.users, args.seed))


if __name__ == "__main__":
    main()
