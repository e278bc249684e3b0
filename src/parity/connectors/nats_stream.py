"""NATS JetStream transport: an ordered consumer that resumes from the log's committed position.

Exactly once comes from parity, not from acks: the stream sequence of the last message of each
commit is stored in the event log with the events (``connectors.event_log``), and a restarted
consumer starts at that sequence + 1 — the JetStream "ordered consumer" (no acks, flow control,
gap detection). Producers should set ``Nats-Msg-Id`` so the server drops re-sends within its
duplicate window (2 minutes by default); parity also drops re-sent event ids over its own, longer
horizon. JetStream's file store fsyncs every 2 minutes by default (``sync_interval``): a machine
crash can lose messages it had acknowledged to producers; parity's log is fsynced per commit, so
what parity committed survives. Needs ``pip install "parity[nats]"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from parity.define.sources import NatsSubject
from parity.errors import MissingExtraError, StoreError
from parity.ports.stream import Incoming
from parity.semantics.time import now_micros

# Messages per commit at most. A commit's SQLite page writes are shared by its events (keys
# interleave: a small commit writes about one page per event), so a consumer that is behind
# commits big batches: 50,000 one-event messages commit at ~1.7× the rate of 5,000 (bench/RESULTS.md).
MAX_BATCH = 50_000
LINGER = 0.005  # seconds a commit waits for more messages: group commit


def stream_sequence(reply: str) -> int:
    """A JetStream message's stream sequence, from its reply subject: what ``msg.metadata`` gives,
    without building the rest of the metadata (~40% of the receive cost per message).
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`` (9 tokens) or, with a domain and
    account hash, ``$JS.ACK.<domain>.<hash>.<stream>...`` (12, or 11 from older servers)."""
    tokens = reply.split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5])
    if len(tokens) >= 11 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[7])
    raise StoreError(f"not a JetStream message (reply subject {reply!r}): subscribe through a JetStream consumer")


class NatsTransport:
    def __init__(self, url: str, subject: NatsSubject, *, max_batch: int = MAX_BATCH, linger: float = LINGER) -> None:
        try:
            import nats  # noqa: F401
        except ImportError:
            raise MissingExtraError("nats", "nats") from None
        self.url = url
        self.subject = subject
        self.max_batch = max_batch
        self.linger = linger
        self.describe = f"NATS {subject.stream}:{subject.subject}"
        self._buffer: list[Incoming] = []
        self._arrived = asyncio.Event()
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None

    async def start(self, position: int | None) -> None:
        import nats
        from nats.js import api
        from nats.js.errors import NotFoundError

        try:
            self._nc = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=-1)
        except Exception as exc:  # noqa: BLE001 - any connection failure is one clear error
            raise StoreError(f"{self.describe}: cannot connect to {self.url}: {type(exc).__name__}: {exc}") from None
        self._js = self._nc.jetstream()
        try:
            await self._js.stream_info(self.subject.stream)
        except NotFoundError:
            await self._js.add_stream(name=self.subject.stream, subjects=[self.subject.subject])
        if position:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=position + 1)
        else:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        self._sub = await self._js.subscribe(self.subject.subject, stream=self.subject.stream, ordered_consumer=True,
                                             config=config, cb=self._on_message)

    async def _on_message(self, msg: Any) -> None:
        self._buffer.append(Incoming(msg.data, stream_sequence(msg.reply), now_micros()))
        self._arrived.set()

    async def batches(self, idle_exit: float | None) -> AsyncIterator[list[Incoming]]:
        last = time.monotonic()
        while True:
            if not self._buffer:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout=0.2)
                except TimeoutError:
                    if idle_exit is not None and time.monotonic() - last > idle_exit:
                        return
                    continue
                await asyncio.sleep(self.linger)  # let a burst gather into one commit
            last = time.monotonic()
            batch, self._buffer = self._buffer[: self.max_batch], self._buffer[self.max_batch:]
            yield batch

    async def ack(self, batch: list[Incoming]) -> None:
        return None  # the ordered consumer takes no acks: the log holds the position

    async def lag(self, position: int | None) -> int | None:
        info = await self._js.stream_info(self.subject.stream)
        return max(0, int(info.state.last_seq) - int(position or 0))

    async def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):  # closing is best effort; the log already holds the position
                if self._sub is not None:
                    await self._sub.unsubscribe()
                await self._nc.close()
                await asyncio.sleep(0)  # let the client's own tasks see the close
            self._nc = None
