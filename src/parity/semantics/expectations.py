"""Checking expectations (``define.expectations``): one rule, for materialization and served traffic.

Over a column of values: ``not_null`` fails when the share of present values is below its rate;
``between`` when a present value lies outside the bounds (NaN is outside every bound); ``one_of``
when a present value is not among the allowed ones (nulls are ``not_null``'s business). Over a
view's rows: ``unique_key_time`` fails when two rows of a key share an event time, and
``freshness`` when the newest event time is older than the declared freshness at the check's time.
Each failure names the feature or view, the expectation, how many values broke it and an example:
the least value that broke it (NaN after numbers), the least (key, event time) of a repeated row —
so the example is the same however the rows were split into key partitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

from parity.define.expectations import Expectation
from parity.define.features import FeatureView
from parity.semantics.ordering import EVENT
from parity.semantics.time import from_micros


@dataclass(frozen=True)
class Violation:
    where: str  # "feature user.amount", "view user_profile"
    expectation: str  # what was expected, as declared
    bad: int  # values (or rows) that broke it
    checked: int
    example: str = ""
    rank: tuple[object, ...] = field(default=(), compare=False, repr=False)  # the example's place: least wins

    def describe(self) -> str:
        return (f"{self.where}: expected {self.expectation}; {self.bad:,} of {self.checked:,} broke it"
                + (f" (e.g. {self.example})" if self.example else ""))


def breaks(e: Expectation, value: object) -> bool:
    """Whether one value breaks ``e`` — the rule ``check_values`` applies to a column, for a single
    event at stream ingest (``not_null`` there takes no rate: one event is all there is)."""
    if value is None:
        return e.kind == "not_null"
    if e.kind == "between":
        number = float(value)  # type: ignore[arg-type]
        return math.isnan(number) or (e.low is not None and number < e.low) or (e.high is not None and number > e.high)
    if e.kind == "one_of":
        return value not in e.values
    return False


@dataclass(frozen=True)
class Tally:
    """What one expectation found over some values: how many were checked and broke it, and the
    first that did. Tallies of disjoint parts of one column add up (``merged``) to the tally of the
    whole, so a column checked one key partition at a time breaks an expectation exactly when it
    would whole (a ``not_null`` rate is decided on the totals)."""

    where: str
    expectation: Expectation
    checked: int
    bad: int
    example: str = ""
    rank: tuple[object, ...] = ()  # the example's place (``least``): of two parts' examples the lesser is kept


def tally_values(values: pl.Series, expectations: tuple[Expectation, ...], where: str) -> list[Tally]:
    out: list[Tally] = []
    n = len(values)
    if n == 0:
        return out
    present = values.drop_nulls()
    for e in expectations:
        if e.kind == "not_null":
            out.append(Tally(where, e, n, n - len(present)))
        elif e.kind == "between":
            numbers = present.cast(pl.Float64)
            inside = pl.lit(True)
            if e.low is not None:
                inside = inside & (pl.col("v") >= e.low)
            if e.high is not None:
                inside = inside & (pl.col("v") <= e.high)
            bad = numbers.to_frame("v").filter(~inside.fill_null(False) | pl.col("v").is_nan())["v"]
            out.append(_with_least(Tally(where, e, n, len(bad)), bad))
        else:
            bad = present.filter(~present.is_in(pl.Series(list(e.values), dtype=present.dtype, strict=False).implode()))
            out.append(_with_least(Tally(where, e, n, len(bad)), bad))
    return out


def least(*values: object) -> tuple[object, ...]:
    """A sort key of values that orders None first and NaN after every number (Polars' order)."""
    return tuple((v is not None, isinstance(v, float) and math.isnan(v), v) for v in values)


def _with_least(tally: Tally, bad: pl.Series) -> Tally:
    if not len(bad):
        return tally
    first = bad.sort()[0]  # Polars sorts NaN last
    return Tally(tally.where, tally.expectation, tally.checked, tally.bad, repr(first), least(first))


def merged(tallies: list[Tally]) -> list[Tally]:
    """Tallies of one expectation over disjoint parts as one (the first example kept)."""
    out: dict[tuple[str, str], Tally] = {}
    for t in tallies:
        key = (t.where, t.expectation.describe())
        held = out.get(key)
        if held is None:
            out[key] = t
            continue
        keep = held if not t.example or (held.example and held.rank <= t.rank) else t
        out[key] = Tally(t.where, t.expectation, held.checked + t.checked, held.bad + t.bad, keep.example, keep.rank)
    return list(out.values())


def violations(tallies: list[Tally]) -> list[Violation]:
    out = []
    for t in tallies:
        if t.expectation.kind == "not_null":
            if t.checked and (t.checked - t.bad) / t.checked < t.expectation.min_rate:
                out.append(Violation(t.where, t.expectation.describe(), t.bad, t.checked,
                                     f"{t.bad / t.checked:.2%} null"))
        elif t.bad:
            out.append(Violation(t.where, t.expectation.describe(), t.bad, t.checked, t.example, t.rank))
    return out


def check_values(values: pl.Series, expectations: tuple[Expectation, ...], where: str) -> list[Violation]:
    return violations(tally_values(values, expectations, where))


def check_view_rows(rows: pl.DataFrame, view: FeatureView, keys: list[str]) -> list[Violation]:
    """The view-level expectations over rows read from its source (keys, ``EVENT``)."""
    if not view.unique_key_time or rows.height == 0:
        return []
    dupes = rows.filter(pl.struct([*keys, EVENT]).is_duplicated())
    if dupes.height == 0:
        return []
    first = dupes.sort([*keys, EVENT], nulls_last=False).row(0, named=True)
    key = ", ".join(f"{k}={first[k]!r}" for k in keys)
    return [Violation(f"view {view.name}", "one row per key and event time", dupes.height, rows.height,
                      f"{key} at {from_micros(first[EVENT]).isoformat()}", least(*(first[k] for k in keys), first[EVENT]))]


def check_freshness(view: FeatureView, newest_event_us: int | None, at_us: int) -> list[Violation]:
    if view.freshness is None:
        return []
    limit_us = int(view.freshness.total_seconds() * 1_000_000)
    if newest_event_us is not None and at_us - newest_event_us <= limit_us:
        return []
    newest = "no event at all" if newest_event_us is None else f"newest event {from_micros(newest_event_us).isoformat()}"
    return [Violation(f"view {view.name}", f"an event within {view.freshness}", 1, 1,
                      f"{newest}, checked at {from_micros(at_us).isoformat()}")]
