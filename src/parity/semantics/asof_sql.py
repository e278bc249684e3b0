"""The as-of rule compiled to SQL, for sources that answer point lookups themselves.

The same rule as ``semantics.asof``: visible rows (event ≤ t, and created ≤ t when the source
uses its created time; a null created time counts as the event time), the greatest by (event,
created, ingestion order) per key. Identifiers are quoted by the caller's dialect; every value is a
bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Quote = Callable[[str], str]


def visible_at(event: str, created: str | None, uses_created: bool) -> str:
    """SQL for the instant a row becomes visible (identifiers already quoted)."""
    if created is None or not uses_created:
        return event
    return f"GREATEST({event}, COALESCE({created}, {event}))"


def order_key(event: str, created: str | None, sequence: str) -> str:
    """SQL ORDER BY list putting the chosen row first."""
    created_sql = f"COALESCE({created}, {event})" if created else event
    return f"{event} DESC, {created_sql} DESC, {sequence} DESC"


def point_lookup(
    *,
    table: str,
    keys: Sequence[str],
    columns: Sequence[str],
    event: str,
    created: str | None,
    uses_created: bool,
    sequence: str,
    n_keys: int,
    placeholder: str,
) -> str:
    """Latest visible row per key at a time given as the first two parameters (the time twice is
    avoided: one parameter ``t`` for visibility), then the key values row by row.

    Parameters, in order: t, then each key tuple flattened.
    """
    row = "(" + ", ".join([placeholder] * len(keys)) + ")"
    key_tuple = "(" + ", ".join(keys) + ")" if len(keys) > 1 else keys[0]
    in_list = ", ".join([row if len(keys) > 1 else placeholder] * n_keys)
    selected = ", ".join([*keys, *columns])
    return (
        f"SELECT * FROM (SELECT {selected}, ROW_NUMBER() OVER (PARTITION BY {', '.join(keys)} "
        f"ORDER BY {order_key(event, created, sequence)}) AS parity_rank "
        f"FROM {table} WHERE {visible_at(event, created, uses_created)} <= {placeholder} "
        f"AND {key_tuple} IN ({in_list})) AS chosen WHERE parity_rank = 1"
    )
