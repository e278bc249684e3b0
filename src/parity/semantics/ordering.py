"""Which of two rows of one key is newer.

Rows are ordered by event time, then created time, then ingestion order (the row's position
in the source). The as-of choice takes the greatest row by this order among visible rows; online
stores accept a write only when it is not older than what they hold (monotonic writes), comparing
(event time, created time) and letting the later write win a full tie, since it was ingested later.
"""

from __future__ import annotations

EVENT = "__parity_ev"
CREATED = "__parity_cr"
SEQUENCE = "__parity_seq"

ROW_ORDER = (EVENT, CREATED, SEQUENCE)


def sql_not_older(new: str, held: str) -> str:
    """The same rule as a SQL predicate over row values, for stores that speak SQL.

    ``new`` and ``held`` are table aliases that have ``ev`` and ``cr`` columns.
    """
    return f"({new}.ev, {new}.cr) >= ({held}.ev, {held}.cr)"
