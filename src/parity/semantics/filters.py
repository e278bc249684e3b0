"""Row filters (``define.expressions``) compiled to Polars: the one evaluator of every path.

Offline the compiled filter runs over a scan; online over each batch of incoming events — the
same expression on the same storage-form columns, so an event passes on one path exactly when it
passes on the other. Logic is three-valued (a comparison with a null is unknown; ``is_in`` of a
null is unknown too), and an event is kept only where the filter is true.
"""

from __future__ import annotations

import polars as pl

from parity.define.expressions import Col, Compare, Expr, IsIn, IsNull, Lit, Logical, Not


def compile_filter(expr: Expr) -> pl.Expr:
    """The filter as a Polars expression that is true exactly for the events it keeps."""
    return _compile(expr).fill_null(False)


def _compile(expr: Expr) -> pl.Expr:
    if isinstance(expr, Col):
        return pl.col(expr.name)
    if isinstance(expr, Lit):
        return pl.lit(expr.value)
    if isinstance(expr, Compare):
        left, right = _compile(expr.left), _compile(expr.right)
        ops = {"==": left.eq, "!=": left.ne, "<": left.lt, "<=": left.le, ">": left.gt, ">=": left.ge}
        return ops[expr.op](right)
    if isinstance(expr, Logical):
        out = _compile(expr.parts[0])
        for part in expr.parts[1:]:
            out = (out & _compile(part)) if expr.op == "and" else (out | _compile(part))
        return out
    if isinstance(expr, Not):
        return ~_compile(expr.part)
    if isinstance(expr, IsIn):
        inner = _compile(expr.part)
        members = [v for v in expr.values if v is not None]
        found = pl.when(inner.is_null()).then(None).otherwise(inner.is_in(members))
        if len(members) < len(expr.values):  # SQL: x IN (..., NULL) is unknown, not false, for a non-member
            found = pl.when(found).then(True).otherwise(None)
        return found
    if isinstance(expr, IsNull):
        inner = _compile(expr.part)
        return inner.is_null() if expr.null else inner.is_not_null()
    raise TypeError(f"not a filter expression: {expr!r}")
