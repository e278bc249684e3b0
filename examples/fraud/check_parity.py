"""Replay transactions at their own times online and compare with the training set, value by value.

Run from a project made by ``parity init``; it materializes as of each transaction's time into a
scratch online store, queries, and compares with the training-set row. Exits 1 on any difference.
"""

from __future__ import annotations

import os
import sys
import tempfile

import polars as pl

import parity as pt
from parity.semantics.values import same_value

FEATURES = [
    "transaction.amount", "transaction.user.country", "transaction.user.account_age_days",
    "transaction.user.txn_count_7d", "transaction.user.countries_30d", "transaction.amount_vs_user_avg",
    "transaction.is_foreign", "transaction.card_age_days", "transaction.is_new_merchant_for_user",
    "transaction.risk_bucket", "transaction.needs_review",
    "transaction.card.txn_count[10m]", "transaction.card.txn_count[1h]", "transaction.card.amount_max[1h]",
    "transaction.user.amount_sum[1d]", "transaction.user.online_count[1d]", "transaction.user.distinct_merchants[30d]",
    "transaction.user.amount_p90[30d]", "transaction.velocity_alert",
]


def replay(offline: pl.DataFrame, features: list[str]) -> int:
    """Ask each training-set row again online, at its own time, from a scratch online store loaded
    as of that time (a store loaded up to today holds today's values, which it never serves for an
    earlier time); print and count the values that differ."""
    mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PARITY_ONLINE_STORE_PATH"] = os.path.join(tmp, "online.db")
        project = pt.Project.load(".")
        try:
            # A window index answers any past time exactly (each event keeps when it became
            # visible), so it is built once; latest-value views are loaded as of each row's time.
            if project.catalog.window_views:
                project.materialize(until=offline["timestamp"].max(), views=list(project.catalog.window_views),
                                    progress=lambda _: None)
            for row in offline.sort("timestamp").iter_rows(named=True):
                project.materialize(until=row["timestamp"], views=list(project.catalog.views), progress=lambda _: None)
                online = project.query({"transaction_id": [row["transaction_id"]]}, features,
                                       now=row["timestamp"]).rows[0]
                for ref in features:
                    if not same_value(online[ref], row[ref]):
                        mismatches += 1
                        print(f"MISMATCH {row['transaction_id']} {ref}: online {online[ref]!r} offline {row[ref]!r}")
        finally:
            project.close()
            del os.environ["PARITY_ONLINE_STORE_PATH"]
    return mismatches


def main(samples: int = 25) -> int:
    labels = pl.read_parquet("data/labels.parquet").sample(samples, seed=1)
    offline = pl.from_arrow(pt.Project.load(".").training_set(labels, FEATURES))
    mismatches = replay(offline, FEATURES)
    print(f"{len(offline)} transactions x {len(FEATURES)} features replayed: {mismatches} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
