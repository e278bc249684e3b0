"""A stream transport, as the runtime's consumer loop sees it (``connectors.nats_stream``,
``connectors.mqtt_stream``): batches of messages in, acknowledgements out after each commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Incoming:
    """One message: its payload (JSON bytes / str of one event or a list of events, or a mapping),
    the transport position it brings the consumer to (None: the transport has none), when it was
    received (µs), the transport's handle for acknowledging it, and fields the transport read
    outside the payload (MQTT topic levels) — an event's own field of the same name wins.

    ``atomic``: all of the message's events are accepted or none is — a message with a bad or too
    late event is refused whole, with its reasons, and nothing of it is logged or dead-lettered
    (the HTTP push endpoint: its caller is there to be told)."""

    payload: bytes | str | Mapping[str, object] | Sequence[Mapping[str, object]]
    position: int | None = None
    received_us: int | None = None
    handle: object = None
    fields: Mapping[str, object] | None = None
    atomic: bool = False


class Transport(Protocol):
    describe: str

    async def start(self, position: int | None) -> None:
        """Connect and start receiving after ``position`` (the log's committed one; None: from the start)."""
        ...

    def batches(self, idle_exit: float | None) -> AsyncIterator[list[Incoming]]:
        """Messages in receive order, grouped into commits (at most a few ms or a few thousand
        messages each); ends after ``idle_exit`` seconds without a message (None: never)."""
        ...

    async def ack(self, batch: list[Incoming]) -> None:
        """Acknowledge a committed batch, in receive order."""
        ...

    async def lag(self, position: int | None) -> int | None:
        """Messages the broker holds beyond ``position`` (None: the transport cannot tell)."""
        ...

    async def close(self) -> None: ...
