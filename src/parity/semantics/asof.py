"""The as-of rule: which source row gives the value of key k at time t.

A row is visible at t when its event time ≤ t and — for sources with a created time and
``as_of="visible"`` — its created time ≤ t too. Among visible rows of k the greatest by
``ordering.ROW_ORDER`` is chosen; a null in it stays null. A null created time counts as the event time.

Vectorized: rows are ranked by (key, event, created, sequence); each row becomes visible at
``max(event, created)``; a running maximum of the rank over visibility time gives, for every
visibility instant, the best row known by then; an as-of join of the probes on that
index finds the answer. Training sets probe with spine rows; materialization probes every key
once at the cutoff — the same function, so both paths choose the same row.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from parity.define.sources import Source
from parity.semantics.ordering import CREATED, EVENT, SEQUENCE

VISIBLE_AT = "__visible_at"
RANK = "__rank"
PROBE_TIME = "__t"
_PROBE = "__probe"


def uses_created(source: Source) -> bool:
    """Whether the created time takes part in visibility for this source."""
    return source.created_time is not None and source.as_of == "visible"


def visible_at_expr(uses_created: bool) -> pl.Expr:
    """When a row becomes visible: max(event, created) or just event (null created = event)."""
    created = pl.col(CREATED).fill_null(pl.col(EVENT))
    return pl.max_horizontal(pl.col(EVENT), created) if uses_created else pl.col(EVENT)


def prepare(rows: pl.DataFrame, keys: Sequence[str], *, uses_created: bool) -> pl.DataFrame:
    """Sort source rows into rank order and add their visibility time.

    ``rows`` holds the key columns, EVENT and CREATED (Int64 µs, CREATED may be all null) and
    SEQUENCE (ingestion order). The result's row number is its rank.
    """
    return (
        rows.with_columns(visible_at_expr(uses_created).alias(VISIBLE_AT), pl.col(CREATED).fill_null(pl.col(EVENT)))
        .sort([*keys, EVENT, CREATED, SEQUENCE])
    )


def _index(prepared: pl.DataFrame, keys: Sequence[str], uses_created: bool) -> pl.DataFrame:
    """One row per (key, visibility instant) holding the rank of the best row visible then."""
    idx = prepared.select(*keys, VISIBLE_AT).with_row_index(RANK)
    if uses_created:
        # Visibility order differs from rank order: carry the best rank seen so far.
        idx = idx.sort([*keys, VISIBLE_AT, RANK]).with_columns(pl.col(RANK).cum_max().over(keys))
    # Keep the last row of each (key, instant) run: it holds the best rank up to that instant.
    last = pl.col(VISIBLE_AT) != pl.col(VISIBLE_AT).shift(-1)
    for key in keys:
        last = last | (pl.col(key) != pl.col(key).shift(-1))
    return idx.filter(last.fill_null(True))


def choose(
    prepared: pl.DataFrame, probes: pl.DataFrame, keys: Sequence[str], *, uses_created: bool
) -> pl.Series:
    """For each probe row (keys + PROBE_TIME µs), the rank of the chosen row, or null.

    The result is aligned with ``probes``; probes with a null key match nothing.
    """
    idx = _index(prepared, keys, uses_created)
    left = probes.select(*keys, PROBE_TIME).with_row_index(_PROBE)
    left = left.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys)).sort([*keys, PROBE_TIME])
    joined = left.join_asof(
        idx,
        left_on=PROBE_TIME,
        right_on=VISIBLE_AT,
        by=list(keys),
        strategy="backward",
        check_sortedness=False,
    )
    ranks = pl.Series(RANK, [None] * probes.height, dtype=pl.UInt32)
    return ranks.scatter(joined[_PROBE], joined[RANK]) if joined.height else ranks


def gather(prepared: pl.DataFrame, ranks: pl.Series, columns: Sequence[str]) -> pl.DataFrame:
    """The chosen rows' ``columns`` (null where nothing was chosen), aligned with ``ranks``."""
    return prepared.select(pl.col(c).gather(ranks) for c in columns)
