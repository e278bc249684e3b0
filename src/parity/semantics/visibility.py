"""Visibility: when a source row can be known, on every path and every source.

A row is visible at t when its event time ≤ t and — for a source with a created time and
``as_of="visible"`` — its created time ≤ t too (a null created time counts as the event time). So a
row becomes visible at ``max(event, created)``, or at ``event`` alone. **A row whose event time is
null is never visible**: it has no place in time, on any path (scans count and skip such rows).

This module owns the rule in three forms that must agree: on integers (the online engine), as a
Polars expression (scans and the offline engine) and compiled to SQL (pushed down to databases,
one comparison per column so each column is compared in its own type and can use its index).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from parity.define.sources import Source
from parity.semantics.ordering import CREATED, EVENT


def uses_created(source: Source) -> bool:
    """Whether the created time takes part in visibility for this source."""
    return source.created_time is not None and source.as_of == "visible"


def stored_visible_at(event_us: int, created_us: int, with_created: bool) -> int:
    """The instant a row an online store holds became visible (a stored row always has an event
    time, and its created time is the event time when the source gave none)."""
    return created_us if with_created and created_us > event_us else event_us


def visible_at_expr(with_created: bool) -> pl.Expr:
    """When each row became visible, over the EVENT / CREATED columns (null where the event time is
    null: never)."""
    event = pl.col(EVENT)
    if not with_created:
        return event
    return pl.when(event.is_null()).then(None).otherwise(pl.max_horizontal(event, pl.col(CREATED).fill_null(event)))


@dataclass(frozen=True)
class Window:
    """What a scan reads: rows visible at ``until_us`` that may have arrived after ``after_us``
    (None bounds are open).

    "May have arrived after a" is "became visible after a" — or, where the source uses created
    times, a created time that is null: when such a row arrived is unknown, so an incremental read
    takes it again (and ``ingest.materialize`` then reads the source in full).
    """

    after_us: int | None = None
    until_us: int | None = None


def window_expr(with_created: bool, window: Window) -> pl.Expr:
    """``window`` over the EVENT / CREATED columns (false for rows without an event time)."""
    visible = visible_at_expr(with_created)
    keep = pl.col(EVENT).is_not_null()
    if window.after_us is not None:
        arrived = visible > window.after_us
        keep = keep & ((arrived | pl.col(CREATED).is_null()) if with_created else arrived)
    if window.until_us is not None:
        keep = keep & (visible <= window.until_us)
    return keep.fill_null(False)


# --- SQL ----------------------------------------------------------------------------------------
#
# The caller passes, per time column, a placeholder bound to "the greatest value of that column
# whose instant is ≤ t" (``semantics.time.latest_*_at_or_before``). Because reading a column as an
# instant is monotonic, ``instant(col) <= t`` is ``col <= that`` and ``instant(col) > t`` is
# ``col > that``, exactly, in the column's own type.


def sql_visible_until(event: str, created: str | None, with_created: bool, p_event: str, p_created: str | None) -> str:
    """SQL for "visible at t" (a null event time compares as unknown, so such rows never pass)."""
    condition = f"{event} <= {p_event}"
    if with_created and created is not None:
        condition += f" AND ({created} IS NULL OR {created} <= {p_created})"
    return condition


def sql_visible_after(event: str, created: str | None, with_created: bool, p_event: str, p_created: str | None) -> str:
    """SQL for "may have arrived after a" (``Window``): max(event, created) > a, or no created time."""
    if with_created and created is not None:
        return f"({event} > {p_event} OR {created} > {p_created} OR {created} IS NULL)"
    return f"{event} > {p_event}"
