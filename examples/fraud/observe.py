"""Run the observability part of the example: served values logged, skew measured, drift found.

Run from a project made by ``parity init``, with ``training_set.parquet`` built and the online store
materialized. Logs every query (sample rate 1) while it:

1. serves 300 random transactions and 200 users: ``parity skew`` replays them through the offline
   engine and finds nothing;
2. plants a skew — after serving, the users source is rewritten in place for 10 users (a credit
   limit corrected without a new row): ``parity skew`` finds exactly those users' logged values of
   ``user.credit_limit``, with the cause ``source_rewritten`` (the source is put back afterwards);
3. plants a drift — 300 more transactions served, all from the top fifth of amounts: their
   ``transaction.amount`` drifts against the training set's (the baseline), while the random 300
   do not.

Exits 1 when any of these does not come out as said.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import orjson
import polars as pl

import parity as pt
from parity.connectors.feature_log_parquet import ParquetFeatureLog
from parity.monitor.bins import Bins
from parity.monitor.drift import drift
from parity.monitor.profile import profile

TXN_FEATURES = ["transaction.amount", "transaction.is_online", "transaction.user.country",
                "transaction.card.card_type", "transaction.amount_vs_user_avg"]
USER_FEATURES = ["user.country", "user.credit_limit", "user.kyc_level", "user.txn_count_7d"]


def skew_report() -> dict:  # type: ignore[type-arg]
    done = subprocess.run([sys.executable, "-m", "parity", "skew", "--sample", "0", "--json", "--quiet"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"parity skew failed: {done.stderr.strip()}")
    report: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return report


def print_skew(report: dict) -> None:  # type: ignore[type-arg]
    print(f"  replayed {report['rows']:,} logged rows of {report['requests']:,} requests: "
          f"{report['mismatches']:,} mismatches")
    for f in report["features"]:
        causes = ", ".join(f"{c} {n}" for c, n in f["causes"].items())
        print(f"  {f['feature']:<36} {f['mismatches']:>4} / {f['compared']:>4}" + (f"  [{causes}]" if causes else ""))
    for f in report["features"]:
        for e in f["examples"][:1]:
            print(f"  e.g. {f['feature']} {e['entity']}: served {e['served']!r}, training gives {e['offline']!r} — "
                  f"{e['cause']}: {e['detail']}")


def main() -> int:
    shutil.rmtree(".parity/feature_log", ignore_errors=True)
    transactions = pl.read_parquet("data/transactions").select("transaction_id", "amount")
    users = pl.read_parquet("data/users.parquet")["user_id"].unique().sort()
    rng = np.random.default_rng(7)
    random_txns = transactions.sample(300, seed=7)["transaction_id"].to_list()
    high_txns = transactions.filter(pl.col("amount") >= pl.col("amount").quantile(0.8)).sample(300, seed=7)
    served_users = rng.choice(users.to_numpy(), size=200, replace=False).tolist()

    os.environ["PARITY_FEATURE_LOG_SAMPLE_RATE"] = "1"
    with pt.Project.load(".") as project:
        for start in range(0, 300, 50):
            project.query({"transaction_id": random_txns[start:start + 50]}, TXN_FEATURES, request_id=f"random-{start}")
        for user_id in served_users:
            project.query({"user_id": user_id}, USER_FEATURES, request_id=f"user-{user_id}")
    failed = False

    print("== skew on healthy serving: the logged answers replayed through the offline engine")
    healthy = skew_report()
    print_skew(healthy)
    if healthy["mismatches"] or healthy["rows"] != 300 + 200:
        print("FAILED: a healthy deployment must replay with no skew")
        failed = True

    print("== planted skew: the users source rewritten in place for 10 served users, after serving")
    shutil.copy("data/users.parquet", "data/users.parquet.orig")
    try:
        edited = served_users[:10]
        source = pl.read_parquet("data/users.parquet")
        source.with_columns(credit_limit=pl.when(pl.col("user_id").is_in(edited))
                            .then(pl.col("credit_limit") + 0.01).otherwise(pl.col("credit_limit"))
                            ).write_parquet("data/users.parquet")
        planted = skew_report()
    finally:
        os.replace("data/users.parquet.orig", "data/users.parquet")
    print_skew(planted)
    limit = next(f for f in planted["features"] if f["feature"] == "user.credit_limit")
    others = planted["mismatches"] - limit["mismatches"]
    if (limit["mismatches"], limit["causes"], others) != (10, {"source_rewritten": 10}, 0):
        print("FAILED: the planted skew must be found exactly, with its cause")
        failed = True

    print("== planted drift: 300 transactions from the top fifth of amounts, against the training set")
    with pt.Project.load(".") as project:
        ids = high_txns["transaction_id"].to_list()
        for start in range(0, 300, 50):
            project.query({"transaction_id": ids[start:start + 50]}, TXN_FEATURES, request_id=f"high-{start}")
    log = pl.from_arrow(ParquetFeatureLog(".").read())
    assert isinstance(log, pl.DataFrame)
    baseline = pl.read_parquet("training_set.parquet")["transaction.amount"]
    bins = Bins.from_baseline(baseline, repr(pt.Float64))
    reference = profile(baseline, bins)
    verdicts = {}
    for kind in ("random", "high"):
        rows = log.filter(pl.col("request_id").str.starts_with(kind + "-"))
        served = pl.Series([orjson.loads(v)["transaction.amount"] for v in rows["values"]], dtype=pl.Float64)
        result = drift(bins, reference, profile(served, bins))
        verdicts[kind] = result.status
        moved = ", ".join(f"{c['bin']} {c['reference']:.1%} -> {c['current']:.1%}" for c in result.contributors)
        print(f"  transaction.amount, {kind} transactions ({result.n_current} served vs {result.n_reference:,} "
              f"in training): {result.status} ({result.method} {result.value:.3g}, threshold {result.threshold:.3g})"
              + (f"; moved most: {moved}" if result.status == "drift" else ""))
    if verdicts != {"random": "ok", "high": "drift"}:
        print(f"FAILED: expected the random transactions quiet and the planted ones drifting, got {verdicts}")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
