"""The as-of rule compiled to SQL, for sources that answer point lookups themselves.

The same rule as ``semantics.asof``, derived from the same owners: visibility from
``semantics.visibility`` (never a row without an event time), the choice from ``ordering.ROW_ORDER``
(event, created-or-event, ingestion order; the greatest wins). Identifiers come quoted by the
caller's dialect, key expressions in the form the dialect compares exactly (bytes for strings), and
every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from parity.semantics import visibility
from parity.semantics.ordering import CREATED, EVENT, EVENT_WALL, ROW_ORDER, SEQUENCE


@dataclass(frozen=True)
class TimeColumns:
    """The quoted event/created/sequence columns of a table and the placeholders bound to t for each."""

    event: str
    created: str | None
    sequence: tuple[str, ...]  # the ingestion order: one column, or several compared in turn
    with_created: bool
    p_event: str
    p_created: str | None


def order_by(columns: TimeColumns) -> str:
    """SQL ORDER BY list putting the chosen row first (``ordering.ROW_ORDER``, descending)."""
    created = f"COALESCE({columns.created}, {columns.event})" if columns.created else columns.event
    # The event column holds the stored value, which for naive times is the wall time itself:
    # ordering by it is ordering by the instant, then the wall (EVENT_WALL).
    sql = {EVENT: (columns.event,), EVENT_WALL: (), CREATED: (created,), SEQUENCE: columns.sequence}
    return ", ".join(f"{part} DESC" for name in ROW_ORDER for part in sql[name])


def point_lookup(
    *,
    table: str,
    keys: Sequence[str],
    key_matches: Sequence[str],
    columns: Sequence[str],
    times: TimeColumns,
    key_filter: str,
) -> str:
    """Latest visible row per key at t.

    ``keys`` are the key columns as selected, ``key_matches`` the expressions they are partitioned
    by (exact comparison), ``key_filter`` the WHERE condition restricting the rows to the asked keys.
    """
    selected = ", ".join([*keys, *columns])
    visible = visibility.sql_visible_until(times.event, times.created, times.with_created, times.p_event, times.p_created)
    return (
        f"SELECT * FROM (SELECT {selected}, ROW_NUMBER() OVER (PARTITION BY {', '.join(key_matches)} "
        f"ORDER BY {order_by(times)}) AS parity_rank "
        f"FROM {table} WHERE {visible} AND {key_filter}) AS chosen WHERE parity_rank = 1"
    )


def point_lookup_lateral(
    *,
    table: str,
    key_rows: Sequence[str],
    key_match: str,
    keys: Sequence[str],
    columns: Sequence[str],
    times: TimeColumns,
) -> str:
    """The same choice as ``point_lookup``, one key at a time: for each asked key (``key_rows``,
    one ``(p, p, ...)`` row each, columns q.k0, q.k1, ...; ``key_match`` compares them with the
    table's columns; ``keys`` select them as the scan reads them) the first visible row in the
    as-of order.

    With an index on (key, event time) the database reads only the newest visible rows of each
    key instead of every row of the asked keys. Parameters: every key row's values, then t.
    """
    names = [f"k{i}" for i in range(len(keys))]
    visible = visibility.sql_visible_until(times.event, times.created, times.with_created, times.p_event, times.p_created)
    return (
        f"SELECT {', '.join(keys)}, chosen.* FROM (VALUES {', '.join(key_rows)}) AS q({', '.join(names)}) "
        f"CROSS JOIN LATERAL (SELECT {', '.join(columns)} FROM {table} WHERE {key_match} AND {visible} "
        f"ORDER BY {order_by(times)} LIMIT 1) AS chosen"
    )
