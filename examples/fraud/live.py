"""Run the live part of the example: a PostgreSQL operational database and the HTTP risk API.

Run from a project made by ``parity init`` with PostgreSQL on loopback. Loads ``fraud_user_accounts``
into PostgreSQL, starts the risk API, then queries features resolved at request time from both,
shows a slow API degrading to its default, and checks online == offline for the PostgreSQL view.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sys
import threading

import polars as pl

import parity as pt

UTC = dt.timezone.utc


def load_accounts(url: str) -> int:
    import psycopg

    users = pl.read_parquet("data/users.parquet").select("user_id", "signup_at").unique("user_id").sort("user_id")
    rng = random.Random(3)
    rows = []
    for uid, signup in users.iter_rows():
        rows.append((uid, signup, "active", float(rng.choice([200, 500, 1000]))))
        if rng.random() < 0.1:  # some accounts were frozen later
            rows.append((uid, signup + dt.timedelta(days=rng.uniform(1, 300)), "frozen", 0.0))
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS fraud_user_accounts")
        con.execute("CREATE TABLE fraud_user_accounts (id bigserial PRIMARY KEY, user_id bigint NOT NULL, "
                    "updated_at timestamptz NOT NULL, account_status text, daily_limit double precision)")
        con.execute("CREATE INDEX ON fraud_user_accounts (user_id, updated_at)")
        with con.cursor() as cur:
            cur.executemany("INSERT INTO fraud_user_accounts (user_id, updated_at, account_status, daily_limit) "
                            "VALUES (%s, %s, %s, %s)", rows)
    return len(rows)


def main() -> int:
    os.environ.setdefault("PARITY_FRAUD_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    os.environ["PARITY_DEFINITIONS"] = "live_features"
    print(f"loaded {load_accounts(os.environ['PARITY_FRAUD_POSTGRES_URL'])} account rows into PostgreSQL")

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from risk_api import serve

    api = serve(0)
    os.environ["FRAUD_RISK_API"] = f"http://127.0.0.1:{api.server_address[1]}"
    threading.Thread(target=api.serve_forever, daemon=True).start()

    project = pt.Project.load(".")
    print(project.apply().render().splitlines()[0])
    project.materialize(progress=lambda _: None)
    features = ["transaction.amount", "transaction.user.account_status", "transaction.user.daily_limit",
                "transaction.external_risk", "transaction.is_foreign"]
    labels = pl.read_parquet("data/labels.parquet").tail(3)
    result = project.query({"transaction_id": labels["transaction_id"].to_list()}, features, with_status=True)
    for details in result.details:
        print(json.dumps({ref: [v.value, v.status] for ref, v in details.items()}))

    # online == offline at historical times: the PostgreSQL view is asked at each request time,
    # the materialized ones come from a store loaded as of that time (check_parity.replay).
    from check_parity import replay

    sample = pl.read_parquet("data/labels.parquet").sample(20, seed=5)
    offline = pl.from_arrow(project.training_set(sample, features))
    mismatches = replay(offline, features)
    print(f"{len(offline)} transactions x {len(features)} features (PostgreSQL + risk API): {mismatches} mismatches")

    api.shutdown()  # the API goes away: external_risk degrades to its default, the rest answers
    down = project.query({"transaction_id": labels["transaction_id"].to_list()[:1]}, features, with_status=True)
    risk = down.details[0]["transaction.external_risk"]
    print(f"risk API down: external_risk={risk.value} ({risk.status}: {risk.error}); "
          f"amount={down.rows[0]['transaction.amount']}")
    project.close()
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
