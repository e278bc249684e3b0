"""kill -9 of the consumer mid-stream, many times at random points, against the real NATS
JetStream and Mosquitto: afterwards the event log holds every published event exactly once, and
the online window values (count, exact sums, max, distinct count and a percentile per key) and the
training set agree with what was published — 0 lost, 0 double-counted."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest

import parity as pt
from parity.connectors.event_log import EventLog
from parity.semantics import windows as rule
from tests.e2e.serving import free_port
from tests.support_services import require_service

KILLS = 20
pytestmark = pytest.mark.integration


def _project(tmp: Path, transport: str, name: str, settings: str = "") -> Path:
    (tmp / "parity.toml").write_text(f'[project]\nname = "{name}"\ndefinitions = "defs.py"\n{settings}')
    (tmp / "defs.py").write_text(textwrap.dedent(f"""
        import parity as pt
        card = pt.Entity("card", keys={{"card_id": pt.Int64}})
        txns = pt.StreamSource(name="txns", event_time="ts", event_id="id",
                               schema={{"id": pt.String, "card_id": pt.Int64, "cents": pt.Int64,
                                        "amount": pt.Float64, "ts": pt.Timestamp}},
                               {transport})
        velocity = pt.WindowView("velocity", entity=card, source=txns, columns={{"cents": pt.Int64, "amount": pt.Float64}},
                                 windows=["lifetime"],
                                 features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("cents", pt.agg.sum("cents")),
                                           pt.Aggregate("amount", pt.agg.sum("amount")),
                                           pt.Aggregate("top", pt.agg.max("amount")),
                                           pt.Aggregate("kinds", pt.agg.count_distinct("cents")),
                                           pt.Aggregate("p90", pt.agg.approx_percentile("cents", 0.9))])
    """))
    return tmp


def _event(i: int, now: dt.datetime) -> dict[str, object]:
    return {"id": f"e{i}", "card_id": i % 7, "cents": i * 37 % 1000 + i // 10, "amount": (i % 13) * 0.1,
            "ts": (now + dt.timedelta(milliseconds=i)).isoformat()}


def _consumer(root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "parity", "-C", str(root), "stream", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_repeatedly(root: Path, publishing: threading.Event, rng: random.Random) -> int:
    kills = 0
    while kills < KILLS or publishing.is_set():
        proc = _consumer(root)
        time.sleep(rng.uniform(0.8, 2.2))  # from before the first commit to well into consuming
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    return kills


def _publish_while_killing(root: Path, publish: Callable[[], None], rng: random.Random) -> None:
    """Run ``publish`` in a thread while the consumer is started and killed with SIGKILL, at least
    ``KILLS`` times and until the publisher is done."""
    publishing = threading.Event()
    publishing.set()

    def run() -> None:
        try:
            publish()
        finally:
            publishing.clear()

    publisher = threading.Thread(target=run)
    publisher.start()
    try:
        kills = _kill_repeatedly(root, publishing, rng)
    finally:
        publisher.join()
    assert kills >= KILLS


def _check(root: Path, events: list[dict[str, object]]) -> None:
    # Drain what is left, then check the log, the online store and the training set.
    drain = subprocess.run([sys.executable, "-m", "parity", "-C", str(root), "stream", "--idle-exit", "3", "-q"],
                           capture_output=True, text=True, timeout=120)
    assert drain.returncode == 0, drain.stderr
    project = pt.Project.load(str(root))
    try:
        source = project.stream_source("txns")
        logged = EventLog(source, str(root)).read()
        ids = logged["id"].to_list()
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events double-counted"
        assert set(ids) == {e["id"] for e in events}, f"{len(events) - len(set(ids))} events lost"
        keys = sorted({e["card_id"] for e in events})
        refs = ["card.n[lifetime]", "card.cents[lifetime]", "card.amount[lifetime]", "card.top[lifetime]",
                "card.kinds[lifetime]", "card.p90[lifetime]"]
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        online = project.query({"card_id": keys}, refs, now=later).rows
        table = pl.from_arrow(project.training_set(pl.DataFrame({"card_id": keys, "timestamp": [later] * len(keys)}),
                                                   refs))
        assert isinstance(table, pl.DataFrame)
        for key, row, offline in zip(keys, online, table.iter_rows(named=True)):
            mine = [e for e in events if e["card_id"] == key]
            assert row["card.n[lifetime]"] == len(mine)
            assert row["card.cents[lifetime]"] == sum(int(e["cents"]) for e in mine)  # type: ignore[call-overload]
            assert row["card.amount[lifetime]"] == float(sum(Fraction(e["amount"]) for e in mine))  # type: ignore[arg-type]
            # a window set and a histogram lane (checkpoints) kept across the kills too
            assert row["card.top[lifetime]"] == max(float(e["amount"]) for e in mine)  # type: ignore[arg-type]
            assert row["card.kinds[lifetime]"] == len({e["cents"] for e in mine})
            buckets = sorted(rule.bucket(float(e["cents"])) for e in mine)  # type: ignore[arg-type]
            assert row["card.p90[lifetime]"] == rule.percentile_of_buckets(buckets, Fraction(9, 10))
            assert {k: offline[k] for k in refs} == row
    finally:
        project.close()


def test_kill_9_of_the_nats_consumer_loses_and_doubles_nothing(tmp_path: Path) -> None:
    require_service("nats", "127.0.0.1", 4222)
    import nats

    run = uuid.uuid4().hex[:10]
    subject, stream = f"parity.test.{run}", f"PARITY_TEST_{run.upper()}"
    root = _project(tmp_path, f'nats=pt.NatsSubject("{subject}", stream="{stream}")', f"kill{run}")
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    events = [_event(i, now) for i in range(30_000)]
    async def publish() -> None:
        nc = await nats.connect("nats://127.0.0.1:4222")
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        for i, event in enumerate(events):
            data = json.dumps(event).encode()
            await js.publish(subject, data, headers={"Nats-Msg-Id": str(event["id"])})
            if i % 1000 == 999:  # a producer retry without an id: only parity's dedup can drop it
                await js.publish(subject, json.dumps(events[i - 500]).encode())
                await asyncio.sleep(0.05)
        await nc.close()

    _publish_while_killing(root, lambda: asyncio.run(publish()), rng)
    try:
        _check(root, events)
    finally:
        async def cleanup() -> None:
            nc = await nats.connect("nats://127.0.0.1:4222")
            await nc.jetstream().delete_stream(stream)
            await nc.close()
        asyncio.run(cleanup())


@contextlib.contextmanager
def _mosquitto_as_parity_needs_it(tmp: Path) -> Iterator[int]:
    """A broker of our own with the settings the README asks for. Mosquitto's defaults queue at
    most 1,000 messages for an offline session and drop the rest ("Outgoing messages are being
    dropped"), which no consumer can get back: with them, a consumer that takes longer than a
    second or two to restart on a loaded machine loses messages the broker never delivered."""
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_inflight_messages 5000\nmax_queued_messages 200000\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert broker.poll() is None and time.monotonic() < deadline, broker.stderr.read() if broker.stderr else ""
                time.sleep(0.05)
        yield port
    finally:
        broker.terminate()
        broker.wait(10)


def test_kill_9_of_the_mqtt_consumer_loses_and_doubles_nothing(tmp_path: Path) -> None:
    require_service("mosquitto", "127.0.0.1", 1883)  # installed: the test starts its own on another port
    with _mosquitto_as_parity_needs_it(tmp_path) as port:
        _kill_mqtt_consumers(tmp_path, port)


def _kill_mqtt_consumers(tmp_path: Path, port: int) -> None:
    import paho.mqtt.client as mqtt

    run = uuid.uuid4().hex[:10]
    topic = f"parity/test/{run}/txns"
    root = _project(tmp_path, f'mqtt=pt.MqttTopic("{topic}")', f"kill{run}",
                    f'[streams]\nmqtt_url = "mqtt://127.0.0.1:{port}"\n')
    # The first consumer creates the persistent session; from then on the broker queues for it.
    first = subprocess.run([sys.executable, "-m", "parity", "-C", str(root), "stream", "--idle-exit", "0.5", "-q"],
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    rng = random.Random(11)
    now = dt.datetime.now(dt.UTC)
    events = [_event(i, now) for i in range(8_000)]
    def publish() -> None:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{run}")
        client.connect("127.0.0.1", port)
        client.loop_start()
        for i, event in enumerate(events):
            client.publish(topic, json.dumps(event), qos=1).wait_for_publish(5)
            if i % 500 == 499:
                client.publish(topic, json.dumps(events[i - 250]), qos=1).wait_for_publish(5)  # a re-send
            time.sleep(0.0025)  # spread over the kills
        client.loop_stop()
        client.disconnect()

    _publish_while_killing(root, publish, rng)
    _check(root, events)
