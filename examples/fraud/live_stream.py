"""Run the streaming part of the example: payments over NATS JetStream, sensor readings over MQTT.

Run from a project made by ``parity init`` with NATS (JetStream) and Mosquitto on loopback. It
publishes the last two hours of payments (each with a ``Nats-Msg-Id``, plus a producer retry
and a malformed message) and five minutes of machine temperatures, runs ``parity stream`` until
both are drained, then checks online == offline for every velocity feature at several times: the
training set reads the event log, the online answers come from the window indexes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys

import polars as pl

import parity as pt
from parity.semantics.values import same_value

UTC = dt.timezone.utc
FEATURES = ["card.live_txn_count[10m]", "card.live_txn_count[1h]", "card.live_amount_max[1h]"]
USER_FEATURES = ["user.live_amount_sum[1d]", "user.live_distinct_merchants[30d]"]
MACHINE_FEATURES = ["machine.temp_mean[5m]", "machine.temp_max[5m]", "machine.readings[5m]"]


async def publish_payments(now: dt.datetime) -> tuple[list[str], list[int]]:
    import nats
    from nats.js.errors import NotFoundError

    recent = pl.read_parquet("data/transactions").sort("ts").tail(3000)
    shift = now - recent["ts"].max()  # replay the last stretch of history as if it happened just now
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    try:
        await js.delete_stream("FRAUD_PAYMENTS")  # a fresh run of the example starts a fresh stream
    except NotFoundError:
        pass
    await js.add_stream(name="FRAUD_PAYMENTS", subjects=["fraud.payments"])
    for row in recent.iter_rows(named=True):
        event = {k: row[k] for k in ("transaction_id", "card_id", "user_id", "merchant_id", "amount")}
        event["ts"] = (row["ts"] + shift).isoformat()
        await js.publish("fraud.payments", json.dumps(event).encode(), headers={"Nats-Msg-Id": row["transaction_id"]})
    await js.publish("fraud.payments", json.dumps(event).encode())  # a producer retry without an id
    await js.publish("fraud.payments", b'{"transaction_id": "broken", "amount": "12,50"}')  # dead-lettered
    await nc.close()
    return sorted(set(recent["card_id"].to_list())), sorted(set(recent["user_id"].to_list()))


def publish_temperatures(now: dt.datetime) -> list[str]:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fraud-example-sensors")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    rng = random.Random(5)
    machines = [f"m{i}" for i in range(1, 6)]
    run = int(now.timestamp())  # ids unique to this run: a broker may still queue an earlier run's readings
    for second in range(0, 300, 2):
        for machine in machines:
            reading = {"reading_id": f"{machine}-{run}-{second}", "celsius": round(60 + rng.gauss(0, 3), 2),
                       "ts": (now - dt.timedelta(seconds=300 - second)).isoformat()}
            client.publish(f"factory/{machine}/temperature", json.dumps(reading), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    return machines


def stream(idle: float) -> None:
    out = subprocess.run([sys.executable, "-m", "parity", "stream", "--idle-exit", str(idle)], capture_output=True,
                         text=True, timeout=600)
    print(out.stdout.strip())
    if out.returncode != 0:
        raise SystemExit(f"parity stream failed: {out.stderr.strip()}")


def check(project: pt.Project, entity_key: str, keys: list[object], features: list[str], times: list[dt.datetime]) -> int:
    spine = pl.DataFrame({entity_key: [k for k in keys for _ in times], "timestamp": [t for _ in keys for t in times]})
    offline = pl.from_arrow(project.training_set(spine, features))
    assert isinstance(offline, pl.DataFrame)
    mismatches = 0
    for row in offline.iter_rows(named=True):
        online = project.query({entity_key: row[entity_key]}, features, now=row["timestamp"]).rows[0]
        for ref in features:
            if not same_value(online[ref], row[ref]):
                mismatches += 1
                print(f"MISMATCH {entity_key}={row[entity_key]} at {row['timestamp']} {ref}: online {online[ref]!r} "
                      f"offline {row[ref]!r}")
    return mismatches


def main() -> int:
    os.environ["PARITY_DEFINITIONS"] = "stream_features"
    now = dt.datetime.now(UTC)
    cards, users = asyncio.run(publish_payments(now))
    # The broker keeps MQTT messages for a session only once it exists: the first consumer run
    # subscribes (and drains the payments), then the machines report, then the consumer runs again.
    stream(idle=1.0)
    machines = publish_temperatures(now)
    stream(idle=2.0)
    subprocess.run([sys.executable, "-m", "parity", "freshness"], check=True)
    dead = subprocess.run([sys.executable, "-m", "parity", "dead-letters", "payments"], capture_output=True, text=True)
    print(f"dead letters of payments: {len(dead.stdout.splitlines())} (e.g. {dead.stdout.splitlines()[0][:140]}...)")
    project = pt.Project.load(".")
    try:
        later = dt.datetime.now(UTC)
        times = [later, later + dt.timedelta(minutes=7), later + dt.timedelta(minutes=45)]
        mismatches = check(project, "card_id", cards[:200], FEATURES, times)
        mismatches += check(project, "user_id", users[:200], USER_FEATURES, times)
        mismatches += check(project, "machine_id", machines, MACHINE_FEATURES, times[:2])
        rows = project.query({"card_id": cards}, FEATURES, now=later).rows
        busiest = max(range(len(cards)), key=lambda i: rows[i]["card.live_txn_count[1h]"])
        print(f"busiest card now, {cards[busiest]}: {rows[busiest]}")
        print(f"machine m1 now: {project.query({'machine_id': 'm1'}, MACHINE_FEATURES, now=later).rows[0]}")
        past = project.query({"card_id": cards[busiest]}, ["card.live_txn_count[1h]"], now=now - dt.timedelta(minutes=1))
        print(f"the same card a minute before the stream arrived: {past.rows[0]} (as known then: nothing had arrived)")
    finally:
        project.close()
    checked = (min(len(cards), 200) * len(FEATURES) + min(len(users), 200) * len(USER_FEATURES)) * 3 + \
        len(machines) * len(MACHINE_FEATURES) * 2
    print(f"streamed windows online == offline: {checked} values checked, {mismatches} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
