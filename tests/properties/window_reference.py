"""A brute-force reference for window aggregates: every event checked one by one, arithmetic in
``Fraction`` (exact), filters evaluated by their own small interpreter. Independent of
``parity.semantics.windows`` except for what the approximate aggregates *are* (the HyperLogLog
estimator and the histogram buckets), which it calls as their definitions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from parity.define.expressions import Col, Compare, Expr, IsIn, IsNull, Lit, Logical, Not
from parity.define.windows import Aggregation
from parity.semantics import windows as sketches


@dataclass(frozen=True)
class Event:
    key: int
    ev: int
    cr: int | None
    seq: int
    values: dict[str, object]


def _truth(expr: Expr, row: dict[str, object]) -> object:
    """Three-valued: True, False or None (unknown)."""
    if isinstance(expr, Col):
        return row.get(expr.name)
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Compare):
        a, b = _truth(expr.left, row), _truth(expr.right, row)
        if a is None or b is None:
            return None
        fa, fb = (isinstance(a, float) and math.isnan(a)), (isinstance(b, float) and math.isnan(b))
        if fa or fb:  # Polars orders NaN above every number and equal to itself
            ka, kb = (1, 0.0) if fa else (0, a), (1, 0.0) if fb else (0, b)
            a, b = ka, kb  # type: ignore[assignment]
        return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[expr.op]  # type: ignore[operator]
    if isinstance(expr, Logical):
        parts = [_truth(p, row) for p in expr.parts]
        if expr.op == "and":
            return False if False in parts else (None if None in parts else True)
        return True if True in parts else (None if None in parts else False)
    if isinstance(expr, Not):
        v = _truth(expr.part, row)
        return None if v is None else not v
    if isinstance(expr, IsIn):
        v = _truth(expr.part, row)
        if v is None:
            return None
        if v in [x for x in expr.values if x is not None]:
            return True
        return None if None in expr.values else False
    if isinstance(expr, IsNull):
        v = _truth(expr.part, row)
        return (v is None) if expr.null else (v is not None)
    raise TypeError(expr)


def in_window(events: Sequence[Event], key: int, t: int, width: int | None, uses_created: bool,
              where: Expr | None) -> list[Event]:
    out = []
    for e in events:
        if e.key != key or e.ev > t:
            continue
        if width is not None and not e.ev > t - width:
            continue
        if uses_created and e.cr is not None and e.cr > t:
            continue
        if where is not None and _truth(where, e.values) is not True:
            continue
        out.append(e)
    out.sort(key=lambda e: (e.ev, e.cr is not None, e.cr or 0, e.seq))
    return out


def _order(x: object) -> object:
    if isinstance(x, float):
        if math.isnan(x):
            return (2, 0.0)
        return (0, x, math.copysign(1.0, x))
    return x


def _canon(x: object) -> object:
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if x == 0.0:
            return 0.0
    return x


def _specials(xs: list[float]) -> float | None:
    nan = any(math.isnan(x) for x in xs)
    pos = any(x == math.inf for x in xs)
    neg = any(x == -math.inf for x in xs)
    if nan or (pos and neg):
        return math.nan
    return math.inf if pos else (-math.inf if neg else None)


def _float(value: Fraction) -> float:
    """Correctly rounded; past the double range, the infinity IEEE rounding gives."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def aggregate(agg: Aggregation, events: list[Event], is_float: bool) -> object:
    kind = agg.kind
    if kind == "count":
        return len(events)
    xs = [e.values[agg.column] for e in events if e.values.get(agg.column) is not None]  # type: ignore[index]
    if kind in ("sum", "mean", "var", "std"):
        special = _specials(xs) if is_float else None  # type: ignore[arg-type]
        n = len(xs)
        if kind == "sum":
            if special is not None:
                return special
            total = sum((Fraction(x) for x in xs), Fraction(0))  # type: ignore[arg-type]
            return _float(total) if is_float else int(total)
        if kind == "mean":
            if n == 0:
                return None
            return special if special is not None else _float(sum(Fraction(x) for x in xs) / n)  # type: ignore[arg-type]
        if n < 2:
            return None
        if special is not None:
            return math.nan
        s = sum(Fraction(x) for x in xs)  # type: ignore[arg-type]
        q = sum(Fraction(x) ** 2 for x in xs)  # type: ignore[arg-type]
        var = _float((n * q - s * s) / (n * (n - 1)))
        return var if kind == "var" else math.sqrt(var)
    if kind in ("min", "max"):
        if not xs:
            return None
        best = min(xs, key=_order) if kind == "min" else max(xs, key=_order)
        return math.nan if isinstance(best, float) and math.isnan(best) else best  # every NaN ties: the one NaN
    if kind == "first":
        return xs[0] if xs else None
    if kind == "last":
        return xs[-1] if xs else None
    if kind == "count_distinct":
        return len({_canon(x) for x in xs})
    if kind == "last_n_distinct":
        seen: list[object] = []
        for x in reversed(xs):
            if _canon(x) not in [_canon(s) for s in seen]:
                seen.append(sketches.canonical(x))
            if len(seen) == agg.n:
                break
        return seen
    if kind == "approx_count_distinct":
        distinct = {_canon(x): x for x in xs}
        if len(distinct) <= sketches.EXACT_DISTINCT:
            return len(distinct)
        return sketches.hll_estimate(sketches.hll_registers([sketches.value_hash(sketches.canonical(x))
                                                             for x in distinct.values()]))
    if kind == "approx_percentile":
        finite = sorted(float(x) for x in xs if math.isfinite(x))  # type: ignore[arg-type]
        if not finite:
            return None
        assert agg.quantile is not None
        rank = max(1, math.ceil(agg.quantile * len(finite)))
        return sketches.bucket_value(sketches.bucket(finite[rank - 1]))
    raise ValueError(kind)
