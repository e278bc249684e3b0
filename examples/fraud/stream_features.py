"""The fraud example fed by streams: everything in ``features`` plus

- ``payments``: card payments arriving on NATS JetStream (subject ``fraud.payments``), validated
  against their schema, deduplicated by ``transaction_id``, appended to the project's event log;
- ``card_live`` / ``user_live``: velocity windows over that stream — card payments in the last
  10 minutes and hour, what the user spent in the last day, distinct merchants in 30 days;
- ``machine_temps``: temperature readings from a factory's machines over MQTT
  (``factory/<machine>/temperature``) with the mean and max over 5 minutes.

Select it with ``PARITY_DEFINITIONS=stream_features``; ``live_stream.py`` sets everything up.
"""

from datetime import timedelta

import parity as pt
from features import *  # noqa: F403 - the embedded example, unchanged
from features.entities import card, user

payments = pt.StreamSource(
    name="payments",
    schema={"transaction_id": pt.String, "card_id": pt.String, "user_id": pt.Int64, "merchant_id": pt.Int64,
            "amount": pt.Float64, "ts": pt.Timestamp},
    event_time="ts", event_id="transaction_id", max_lateness=timedelta(hours=6),
    nats=pt.NatsSubject("fraud.payments", stream="FRAUD_PAYMENTS"),
)

card_live = pt.WindowView(
    "card_live", entity=card, source=payments, columns={"amount": pt.Float64}, windows=["10m", "1h"],
    features=[pt.Aggregate("live_txn_count", pt.agg.count()),
              pt.Aggregate("live_amount_max", pt.agg.max("amount"))],
)

user_live = pt.WindowView(
    "user_live", entity=user, source=payments, columns={"amount": pt.Float64, "merchant_id": pt.Int64},
    windows=["1d"],
    features=[pt.Aggregate("live_amount_sum", pt.agg.sum("amount")),
              pt.Aggregate("live_distinct_merchants", pt.agg.count_distinct("merchant_id"), windows=["30d"])],
)

machine = pt.Entity("machine", keys={"machine_id": pt.String}, description="A machine on the factory floor.")

machine_temps = pt.StreamSource(
    name="machine_temps",
    schema={"reading_id": pt.String, "machine_id": pt.String, "celsius": pt.Float64, "ts": pt.Timestamp},
    event_time="ts", event_id="reading_id",
    mqtt=pt.MqttTopic("factory/+/temperature", fields_from_topic={"machine_id": 1}),
)

machine_health = pt.WindowView(
    "machine_health", entity=machine, source=machine_temps, columns={"celsius": pt.Float64}, windows=["5m"],
    features=[pt.Aggregate("temp_mean", pt.agg.mean("celsius")), pt.Aggregate("temp_max", pt.agg.max("celsius")),
              pt.Aggregate("readings", pt.agg.count())],
)
