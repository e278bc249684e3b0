"""The fraud example with live systems: everything in ``features`` plus

- ``user_account``: read at request time from the PostgreSQL "operational database" (kept fresh
  within 30 s, written back to the online store), and
- ``external_risk``: an async resolver calling the HTTP "risk API" with a timeout, retries, a
  concurrency limit and a circuit breaker.

Select it with ``PARITY_DEFINITIONS=live_features``; ``live.py`` sets everything up.
"""

import os
from datetime import timedelta
from typing import Annotated

import parity as pt
from features import *  # noqa: F403 - the embedded example, unchanged
from features.entities import transaction, user

accounts_db = pt.PostgresSource(
    "accounts_db", table="fraud_user_accounts", connection="env:PARITY_FRAUD_POSTGRES_URL",
    event_time="updated_at", sequence="id",
)

user_account = pt.FeatureView(
    "user_account",
    entity=user,
    source=accounts_db,
    features=[
        pt.Feature("account_status", pt.String, default="unknown", description="active / frozen / closed"),
        pt.Feature("daily_limit", pt.Float64, description="Spending limit set by the user in the app."),
    ],
    max_staleness=timedelta(seconds=30),
    timeout=0.5,
    owner="payments-team",
)


@pt.resolver(
    entity=transaction,
    outputs=pt.Feature("external_risk", pt.Float64, default=0.5, description="Score from the risk API, 0-1."),
    timeout=0.3,
    retries=1,
    concurrency=32,
    circuit_breaker=pt.CircuitBreaker(failures=5, reset_after=10.0),
)
async def external_risk(
    amount: float | None, country: Annotated[str | None, "merchant.country"], http
) -> float | None:
    if amount is None:
        return None
    base = os.environ.get("FRAUD_RISK_API", "http://127.0.0.1:8765")
    answer = await http.get_json(f"{base}/score", params={"amount": amount, "country": country or ""})
    return float(answer["score"])
