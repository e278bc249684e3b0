#!/usr/bin/env bash
# The main job: set up parity and run the bundled fraud example end to end on the embedded
# defaults (Parquet/DuckDB/SQLite sources, SQLite online store) — no server needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[postgres,http,nats,mqtt,server,report]" 2>&1 | { grep -v "^WARNING: Location" || true; }
PARITY="$PWD/.venv/bin/parity"

rm -rf example-run
"$PARITY" init example-run
cd example-run

echo "== apply: validate the definitions and record versions"
"$PARITY" apply
echo "== features"
"$PARITY" features

FEATURES=transaction.amount,transaction.is_online,transaction.user.country,transaction.user.account_age_days,\
transaction.user.txn_count_7d,transaction.user.countries_30d,transaction.amount_vs_user_avg,transaction.is_foreign,\
transaction.card_age_days,transaction.card.card_type,transaction.merchant.category,transaction.is_new_merchant_for_user,\
transaction.risk_bucket,transaction.needs_review,transaction.card.txn_count[10m],transaction.card.txn_count[1h],\
transaction.user.amount_sum[1d],transaction.user.distinct_merchants[30d],transaction.velocity_alert

echo "== explain: the plan both engines run"
"$PARITY" explain "$FEATURES"
echo "== training set: one row per labelled transaction, as known at its time"
"$PARITY" training-set --spine data/labels.parquet --features "$FEATURES" --out training_set.parquet
echo "== materialize into the online store (full, then incremental: nothing new)"
"$PARITY" materialize --full
"$PARITY" materialize
echo "== online query"
"$PARITY" query --features "$FEATURES" --entity transaction_id=t00000042 --status
echo "== online == offline: replaying labelled transactions at their own times"
../.venv/bin/python check_parity.py

# The live part needs PostgreSQL on loopback (the "operational database"); the risk API is started
# by the script itself. Without PostgreSQL the embedded example above is the whole main job.
if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "== live: PostgreSQL operational database + HTTP risk API, resolved at request time"
  ../.venv/bin/python live.py
else
  echo "== live part skipped: PostgreSQL is not running on 127.0.0.1:5432 (see README, 'Connectors')"
fi

# The streaming part needs NATS (JetStream) and Mosquitto on loopback (scripts/services.sh starts them).
if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "== streams: payments over NATS JetStream, machine temperatures over MQTT, velocity windows online == offline"
  ../.venv/bin/python live_stream.py
else
  echo "== streaming part skipped: NATS (4222) and Mosquitto (1883) are not both running (bash scripts/services.sh)"
fi

echo "== server: parity serve, queried with parity.Client and curl; a masked pii feature, a denied role, the audit trail verified"
../.venv/bin/python serve.py
echo "== observability: served values logged, parity skew quiet on healthy serving, a planted skew and a planted drift found"
../.venv/bin/python observe.py
