"""MQTT transport: QoS 1 on a persistent session, each message acknowledged after its commit.

MQTT has no offsets to rewind. parity subscribes with a stable client id and ``clean_session``
off, so the broker keeps the session — and the QoS 1 messages not yet acknowledged — while the
consumer is down, and acknowledges (PUBACK) only after the events are in the event log, in receive
order. A message redelivered after a crash is then dropped by event id. What the broker itself
drops is beyond any consumer: Mosquitto keeps at most ``max_queued_messages`` (1,000 by default)
per offline session and loses queued messages on restart unless ``persistence true``; size the
queue for the longest downtime. paho keeps its own session state in memory only, which is why
parity relies on QoS 1 + ids rather than QoS 2. Needs ``pip install "parity[mqtt]"``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlparse

from parity.define.sources import MqttTopic
from parity.errors import ConfigError, MissingExtraError, StoreError
from parity.ports.stream import Incoming
from parity.semantics.time import now_micros

MAX_BATCH = 5000
LINGER = 0.005


class MqttTransport:
    def __init__(self, url: str, topic: MqttTopic, client_id: str, *, max_batch: int = MAX_BATCH,
                 linger: float = LINGER) -> None:
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise MissingExtraError("mqtt", "mqtt") from None
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
            raise ConfigError(f"MQTT URL {url!r}: write it as mqtt://host:port")
        self.host, self.port = parsed.hostname, parsed.port or 1883
        self.topic = topic
        self.client_id = client_id
        self.max_batch = max_batch
        self.linger = linger
        self.describe = f"MQTT {topic.topic}"
        self._queue: deque[Incoming] = deque()
        self._connected = threading.Event()
        self._client: Any = None

    async def start(self, position: int | None) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                             manual_ack=True)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            c.subscribe(self.topic.topic, qos=self.topic.qos)
            self._connected.set()

        def on_message(c: Any, userdata: Any, msg: Any) -> None:
            fields = _topic_fields(msg.topic, self.topic.fields_from_topic) if self.topic.fields_from_topic else None
            self._queue.append(Incoming(msg.payload, None, now_micros(), (msg.mid, msg.qos), fields))

        client.on_connect = on_connect
        client.on_message = on_message
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise StoreError(f"{self.describe}: cannot connect to {self.host}:{self.port}: {exc}") from None
        client.loop_start()
        self._client = client
        deadline = time.monotonic() + 10
        while not self._connected.is_set():
            if time.monotonic() > deadline:
                raise StoreError(f"{self.describe}: the broker at {self.host}:{self.port} did not accept the session")
            await asyncio.sleep(0.01)

    async def batches(self, idle_exit: float | None) -> AsyncIterator[list[Incoming]]:
        last = time.monotonic()
        while True:
            if not self._queue:
                await asyncio.sleep(0.002)
                if idle_exit is not None and time.monotonic() - last > idle_exit:
                    return
                continue
            await asyncio.sleep(self.linger)
            last = time.monotonic()
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            yield batch

    async def ack(self, batch: list[Incoming]) -> None:
        for message in batch:
            handle = cast(tuple[int, int], message.handle)
            self._client.ack(handle[0], handle[1])

    async def lag(self, position: int | None) -> int | None:
        return len(self._queue)  # received, not yet committed; the broker's own queue is not visible

    async def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None


def _topic_fields(topic: str, fields: dict[str, int]) -> dict[str, object]:
    """Fields read from topic levels (``factory/<machine>/temperature``)."""
    levels = topic.split("/")
    return {name: levels[level] for name, level in fields.items() if level < len(levels)}
