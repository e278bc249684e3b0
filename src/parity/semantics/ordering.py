"""Which of two rows of one key is newer.

Rows are ordered by event time, then created time, then ingestion order (the row's position
in the source). Where the source stores naive wall-clock times, two different wall times can be
one instant — both inside the hour a spring-forward change skips (``semantics.time``) — and the
later wall time comes first among them (``EVENT_WALL``): it is the order a database sorting the
stored values gives, so a request-time lookup and a training set choose the same row. The as-of choice takes the greatest row by this order among visible rows; online
stores accept a write only when it is not older than what they hold (monotonic writes), comparing
(event time, created time) and letting the later write win a full tie, since it was ingested later.
"""

from __future__ import annotations

EVENT = "__parity_ev"
EVENT_WALL = "__parity_ev_wall"  # the stored wall time, for sources of naive times only
CREATED = "__parity_cr"
SEQUENCE = "__parity_seq"

ROW_ORDER = (EVENT, EVENT_WALL, CREATED, SEQUENCE)


def row_order(columns: list[str] | tuple[str, ...]) -> list[str]:
    """``ROW_ORDER`` as far as a frame has it (EVENT_WALL only where the source stores wall times)."""
    return [c for c in ROW_ORDER if c != EVENT_WALL or c in columns]


def sql_not_older(new: str, held: str) -> str:
    """The same rule as a SQL predicate over row values, for stores that speak SQL.

    ``new`` and ``held`` are table aliases that have ``ev`` and ``cr`` columns.
    """
    return f"({new}.ev, {new}.cr) >= ({held}.ev, {held}.cr)"
