from datetime import timedelta

import parity as pt

from features.entities import card, merchant, transaction, user, user_merchant

# Profile rows are corrected after the fact: ingested_at says when each version reached the
# warehouse, so a training row never sees a correction that arrived after its time.
users = pt.ParquetSource("users", path="data/users.parquet", event_time="updated_at", created_time="ingested_at")
transactions = pt.ParquetSource("transactions", path="data/transactions", event_time="ts")
daily_stats = pt.ParquetSource("user_daily_stats", path="data/user_daily_stats.parquet", event_time="day_end")
pair_history = pt.ParquetSource("user_merchant_daily", path="data/user_merchant_daily.parquet", event_time="day_end")
cards = pt.DuckDBSource("cards", database="data/cards.duckdb", table="cards", event_time="updated_at")
merchants = pt.SQLiteSource("merchants", database="data/merchants.sqlite", table="merchants", event_time="updated_at")

user_profile = pt.FeatureView(
    "user_profile",
    entity=user,
    source=users,
    features=[
        pt.Feature("country", pt.String, description="Country of residence (ISO 3166 alpha-2)."),
        pt.Feature("signup_at", pt.Timestamp, description="When the account was opened."),
        pt.Feature("credit_limit", pt.Float64, description="Current credit limit in EUR."),
        pt.Feature("kyc_level", pt.Int64, description="Know-your-customer tier, 0-3."),
        pt.Feature("email", pt.String, description="Contact e-mail.", tags=("pii",)),
    ],
    owner="risk-team",
)

user_daily = pt.FeatureView(
    "user_daily_stats",
    entity=user,
    source=daily_stats,
    features=[
        pt.Feature("txn_count_7d", pt.Int64, description="Transactions in the 7 days up to the day's end."),
        pt.Feature("amount_sum_7d", pt.Float64),
        pt.Feature("amount_avg_30d", pt.Float64),
        pt.Feature("countries_30d", pt.List(pt.String), description="Merchant countries seen in 30 days."),
        pt.Feature("last_active_day", pt.Date),
    ],
    max_age=timedelta(days=2),  # a stale daily aggregate is worse than none
    owner="risk-team",
)
user_daily_stats = user_daily

user_merchant_history = pt.FeatureView(
    "user_merchant_history",
    entity=user_merchant,
    source=pair_history,
    features=[pt.Feature("txn_count_90d", pt.Int64, description="Payments of this user at this merchant, 90 days.")],
    max_age=timedelta(days=2),
)

transaction_facts = pt.FeatureView(
    "transaction_facts",
    entity=transaction,
    source=transactions,
    features=[
        pt.Feature("user_id", pt.Int64),
        pt.Feature("card_id", pt.String),
        pt.Feature("merchant_id", pt.Int64),
        pt.Feature("amount", pt.Float64, description="Amount in EUR."),
        pt.Feature("is_online", pt.Bool, description="Card-not-present payment."),
    ],
)

card_profile = pt.FeatureView(
    "card_profile",
    entity=card,
    source=cards,
    features=[
        pt.Feature("user_id", pt.Int64),
        pt.Feature("issued_at", pt.Timestamp),
        pt.Feature("card_type", pt.String),
        pt.Feature("is_virtual", pt.Bool),
    ],
)

merchant_profile = pt.FeatureView(
    "merchant_profile",
    entity=merchant,
    source=merchants,
    features=[
        pt.Feature("category", pt.String),
        pt.Feature("country", pt.String),
        pt.Feature("risk_score", pt.Float64, description="Acquirer risk score, 0-1."),
    ],
)

# Velocity: window aggregates over the same transactions, exact on both paths. At a transaction's
# own time its windows include it (t - w < event time <= t).
card_velocity = pt.WindowView(
    "card_velocity",
    entity=card,
    source=transactions,
    columns={"amount": pt.Float64, "merchant_id": pt.Int64},
    windows=["10m", "1h"],
    features=[
        pt.Aggregate("txn_count", pt.agg.count(), description="Payments with this card in the window."),
        pt.Aggregate("amount_max", pt.agg.max("amount"), windows=["1h"]),
    ],
)

user_velocity = pt.WindowView(
    "user_velocity",
    entity=user,
    source=transactions,
    columns={"amount": pt.Float64, "merchant_id": pt.Int64, "is_online": pt.Bool},
    windows=["1d"],
    features=[
        pt.Aggregate("amount_sum", pt.agg.sum("amount"), description="EUR spent in the window."),
        pt.Aggregate("online_count", pt.agg.count(), where=pt.col("is_online")),
        pt.Aggregate("distinct_merchants", pt.agg.count_distinct("merchant_id"), windows=["30d"]),
        pt.Aggregate("amount_p90", pt.agg.approx_percentile("amount", 0.9), windows=["30d"]),
    ],
)
