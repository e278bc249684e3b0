"""max_age: a chosen value older than ``max_age`` at time t is expired (null offline, "expired" online).

A value exactly ``max_age`` old is still valid: expired iff t − event time > max_age.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from parity.semantics.time import timedelta_micros


def expired_micros(t_us: int, event_us: int, max_age_us: int | None) -> bool:
    """The rule on integers: ``max_age_us`` None means no limit."""
    return max_age_us is not None and t_us - event_us > max_age_us


def is_expired(t_us: int, event_us: int, max_age: dt.timedelta | None) -> bool:
    return expired_micros(t_us, event_us, None if max_age is None else timedelta_micros(max_age))


def expired_expr(t: pl.Expr, event: pl.Expr, max_age: dt.timedelta | None) -> pl.Expr:
    """Vectorized ``is_expired`` over Int64 microsecond columns (null event → not expired)."""
    if max_age is None:
        return pl.lit(False)
    return ((t - event) > timedelta_micros(max_age)).fill_null(False)
