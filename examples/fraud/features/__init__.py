"""Feature definitions for the bundled card-fraud example.

Entities: users hold cards; transactions are made with a card, by a user, at a merchant. Data lives
in four kinds of sources (Parquet files and folders, a DuckDB table, a SQLite table). Python
resolvers derive features at query time — the same functions offline and online.
"""

from features.access import fraud_scoring, support_desk
from features.entities import card, merchant, transaction, user, user_merchant
from features.resolvers import (
    account_age_days,
    amount_vs_user_avg,
    card_age_days,
    is_foreign,
    is_new_merchant_for_user,
    merchant_risk,
    velocity_alert,
)
from features.views import (
    card_profile,
    card_velocity,
    merchant_profile,
    transaction_facts,
    user_daily_stats,
    user_merchant_history,
    user_profile,
    user_velocity,
)

__all__ = [
    "account_age_days",
    "amount_vs_user_avg",
    "card",
    "card_age_days",
    "card_profile",
    "card_velocity",
    "fraud_scoring",
    "is_foreign",
    "is_new_merchant_for_user",
    "merchant",
    "merchant_profile",
    "merchant_risk",
    "support_desk",
    "transaction",
    "transaction_facts",
    "user",
    "user_daily_stats",
    "user_merchant",
    "user_merchant_history",
    "user_profile",
    "user_velocity",
    "velocity_alert",
]
