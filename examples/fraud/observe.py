"""Run the observability part of the example: served values logged, skew measured, drift found.

Run from a project made by ``parity init``, with ``training_set.parquet`` built and the online store
materialized. Logs every query (sample rate 1) while it:

1. serves 300 random transactions and 200 users: ``parity skew`` replays them through the offline
   engine and finds nothing;
2. ``parity monitor`` watches that traffic against the baselines the training set recorded: no
   drift — and one real finding: ``transaction.amount_vs_user_avg`` is all null when served today,
   because the user's 30-day amount window is empty (the example's data ends in 2025), while the
   training set, built at each transaction's own time, holds it. The monitor calls it a null burst,
   as it should;
3. plants a skew — after serving, the users source is rewritten in place for 10 users (a credit
   limit corrected without a new row) — and a drift — 300 more transactions served, all from the top
   fifth of amounts; ``parity monitor --skew --html report.html`` finds ``transaction.amount``
   drifting against its baseline and exactly those users' logged ``user.credit_limit`` values
   skewed, with the cause ``source_rewritten``, and the report shows both (the source is put back
   afterwards).

Exits 1 when any of these does not come out as said.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import polars as pl

import parity as pt

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


def monitor_report(since: str, *flags: str) -> dict:  # type: ignore[type-arg]
    # one bucket from the script's start: everything served here is watched together
    done = subprocess.run([sys.executable, "-m", "parity", "monitor", "--since", since, "--bucket", "1d", "--json",
                           *flags], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"parity monitor failed: {done.stderr.strip()}")
    report: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return report


def main() -> int:
    shutil.rmtree(".parity/feature_log", ignore_errors=True)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
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

    print("== healthy traffic watched: parity monitor against the training set's baselines")
    quiet = monitor_report(since, "--no-record")
    alarms = {f["feature"]: sorted({a["metric"] for a in f["alarms"]}) for f in quiet["features"] if f["alarms"]}
    print(f"  {len(quiet['features'])} feature versions watched, alarms: {alarms or 'none'}")
    # the one expected: served today, a 30-day window over data that ends in 2025 is empty
    if alarms != {"transaction.amount_vs_user_avg": ["null_rate"]}:
        print("FAILED: healthy traffic must not drift; the only alarm expected is the null burst of "
              "transaction.amount_vs_user_avg (its 30-day window is empty today)")
        failed = True
    else:
        print("  transaction.amount_vs_user_avg: a null burst, found as it should be: all null when served "
              "today (the user's 30-day window is empty), present in the training set")

    print("== planted: the users source rewritten in place for 10 served users (skew), and 300 transactions")
    print("   served from the top fifth of amounts (drift); parity monitor --skew writes report.html")
    with pt.Project.load(".") as project:
        ids = high_txns["transaction_id"].to_list()
        for start in range(0, 300, 50):
            project.query({"transaction_id": ids[start:start + 50]}, TXN_FEATURES, request_id=f"high-{start}")
    shutil.copy("data/users.parquet", "data/users.parquet.orig")
    try:
        edited = served_users[:10]
        source = pl.read_parquet("data/users.parquet")
        source.with_columns(credit_limit=pl.when(pl.col("user_id").is_in(edited))
                            .then(pl.col("credit_limit") + 0.01).otherwise(pl.col("credit_limit"))
                            ).write_parquet("data/users.parquet")
        found = monitor_report(since, "--skew", "--skew-sample", "0", "--html", "report.html")
    finally:
        os.replace("data/users.parquet.orig", "data/users.parquet")
    planted = found["skew"]
    print_skew(planted)
    limit = next(f for f in planted["features"] if f["feature"] == "user.credit_limit")
    others = planted["mismatches"] - limit["mismatches"]
    if (limit["mismatches"], limit["causes"], others) != (10, {"source_rewritten": 10}, 0):
        print("FAILED: the planted skew must be found exactly, with its cause")
        failed = True
    amount = next(f for f in found["features"] if f["feature"] == "transaction.amount")
    for alarm in amount["alarms"]:
        print(f"  transaction.amount: {alarm['metric']} {alarm['value']:.3g} > {alarm['threshold']:.3g}")
    with open("report.html", encoding="utf-8") as handle:
        report = handle.read()
    plots = report.count("<img class='plot'")
    print(f"  report.html: {len(report) // 1024} KiB, {plots} plots, self-contained (no script, nothing fetched)")
    if amount["status"] != "drift" or "Train/serve skew" not in report or "<b>drift</b>" not in report:
        print("FAILED: the report must show the planted drift and the planted skew")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
