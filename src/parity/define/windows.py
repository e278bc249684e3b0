"""Window aggregations: features that aggregate an entity's events over trailing windows.

>>> card_velocity = WindowView(
...     "card_velocity", entity=card, source=transactions,
...     columns={"amount": Float64, "merchant_id": String, "country": String},
...     windows=["10m", "1h", "1d", "30d"],
...     features=[
...         Aggregate("txn_count", agg.count()),
...         Aggregate("amount_sum", agg.sum("amount")),
...         Aggregate("foreign_count", agg.count(), where=col("country") != "DE"),
...         Aggregate("distinct_merchants", agg.count_distinct("merchant_id"), windows=["30d", "lifetime"]),
...     ],
... )

Each aggregate is one feature per width, named ``<feature>[<width>]``: ``card.txn_count[10m]``,
``card.distinct_merchants[lifetime]`` — in queries, training sets and resolver inputs alike
(``Annotated[int, "txn_count[1h]"]``). A width is a number and a unit (``s``, ``m``, ``h``,
``d``, ``w``) or ``lifetime``; ``60m`` and ``1h`` name the same window and read back as ``1h``.

The window of width w at time t holds the events visible at t with t − w < event time ≤ t
(``semantics.windows`` owns that rule and every aggregate's arithmetic).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from parity.define.dtypes import SCALARS, DType, Float64, Int64, List
from parity.define.entities import Entity
from parity.define.expressions import Col, Compare, Expr, IsIn, IsNull, Lit, Logical, Not
from parity.define.location import caller_location
from parity.define.sources import Source, check_column_name
from parity.errors import DefinitionError

LIFETIME = "lifetime"
_UNITS = {"w": 7 * 86_400_000_000, "d": 86_400_000_000, "h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000}
_WIDTH = re.compile(r"^([1-9][0-9]*)(w|d|h|m|s)$")
Width = int | None  # µs; None is the lifetime window


_MAX_WIDTH = 100 * 366 * 86_400_000_000  # a century: past that, use lifetime


def _checked_width(micros: int, value: object, what: str) -> int:
    if micros <= 0 or micros % 1_000_000:
        raise DefinitionError(f"{what}: window width {value!r} must be a positive whole number of seconds")
    if micros > _MAX_WIDTH:
        raise DefinitionError(f"{what}: window width {value!r} is longer than a century; use 'lifetime'")
    return micros


def parse_width(value: object, what: str = "window") -> Width:
    """``"10m"`` → 600_000_000 µs, ``"lifetime"`` → None; a timedelta is taken as it is (whole
    seconds, at most a century)."""
    if isinstance(value, dt.timedelta):
        micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        return _checked_width(micros, value, what)
    if isinstance(value, str):
        text = value.strip()
        if text == LIFETIME:
            return None
        m = _WIDTH.match(text)
        if m:
            return _checked_width(int(m.group(1)) * _UNITS[m.group(2)], value, what)
    raise DefinitionError(f"{what}: window width {value!r} is not a width; write a number and a unit (s, m, h, d, w) "
                          f"such as '10m' or '30d', or 'lifetime'")


def width_label(width: Width) -> str:
    """The canonical name of a width: the largest unit that divides it (``3600 s`` → ``1h``)."""
    if width is None:
        return LIFETIME
    for unit, size in _UNITS.items():
        if width % size == 0:
            return f"{width // size}{unit}"
    return f"{width}us"


@dataclass(frozen=True)
class Aggregation:
    """What an aggregate computes; made by the functions of ``parity.agg`` (``agg.sum("amount")``)."""

    kind: str
    column: str | None = None
    n: int | None = None  # last_n_distinct
    quantile: Fraction | None = None  # approx_percentile

    def describe(self) -> object:
        return [self.kind, self.column, self.n, None if self.quantile is None else str(self.quantile)]

    def output_dtype(self, column: DType | None, where: str) -> DType:
        kind = self.kind
        if kind in ("count", "count_distinct", "approx_count_distinct"):
            return Int64
        if column is None:
            raise DefinitionError(f"{where}: {kind} needs a column")
        if column.inner is not None:
            raise DefinitionError(f"{where}: {kind} of list column {self.column!r} is not supported; aggregate scalars")
        numeric = column in (Int64, Float64)
        if kind == "sum":
            if not numeric:
                raise DefinitionError(f"{where}: sum needs an Int64 or Float64 column; {self.column!r} is {column!r}")
            return column
        if kind in ("mean", "var", "std", "approx_percentile"):
            if not numeric:
                raise DefinitionError(f"{where}: {kind} needs an Int64 or Float64 column; {self.column!r} is {column!r}")
            return Float64
        if kind in ("min", "max"):
            if column.name not in ("Int64", "Float64", "Timestamp", "Date"):
                raise DefinitionError(f"{where}: {kind} needs an Int64, Float64, Timestamp or Date column; "
                                      f"{self.column!r} is {column!r}")
            return column
        if kind in ("first", "last"):
            return column
        if kind == "last_n_distinct":
            return List(column)
        raise DefinitionError(f"{where}: unknown aggregation {kind!r}")


class _Agg:
    """The aggregations a window feature can compute (``parity.agg``)."""

    @staticmethod
    def count() -> Aggregation:
        """Events in the window (that pass the feature's filter). Empty window: 0."""
        return Aggregation("count")

    @staticmethod
    def sum(column: str) -> Aggregation:
        """Sum of the non-null values, exact (floats rounded once). Empty window: 0."""
        return Aggregation("sum", _column(column))

    @staticmethod
    def mean(column: str) -> Aggregation:
        """Mean of the non-null values, from exact sums. Empty window: null."""
        return Aggregation("mean", _column(column))

    @staticmethod
    def var(column: str) -> Aggregation:
        """Sample variance (n − 1) of the non-null values, from exact sums. Fewer than 2 values: null."""
        return Aggregation("var", _column(column))

    @staticmethod
    def std(column: str) -> Aggregation:
        """The square root of ``var``. Fewer than 2 values: null."""
        return Aggregation("std", _column(column))

    @staticmethod
    def min(column: str) -> Aggregation:
        """Smallest non-null value (floats: NaN above every number, -0.0 below 0.0). Empty window: null."""
        return Aggregation("min", _column(column))

    @staticmethod
    def max(column: str) -> Aggregation:
        """Greatest non-null value (same order as ``min``). Empty window: null."""
        return Aggregation("max", _column(column))

    @staticmethod
    def first(column: str) -> Aggregation:
        """The non-null value of the window's earliest event (ties as everywhere). Empty: null."""
        return Aggregation("first", _column(column))

    @staticmethod
    def last(column: str) -> Aggregation:
        """The non-null value of the window's latest event. Empty: null."""
        return Aggregation("last", _column(column))

    @staticmethod
    def last_n_distinct(column: str, n: int) -> Aggregation:
        """The ``n`` most recent distinct non-null values, newest first. Empty: []."""
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1000:
            raise DefinitionError(f"last_n_distinct: n must be an int from 1 to 1000, got {n!r}",
                                  location=caller_location())
        return Aggregation("last_n_distinct", _column(column), n=n)

    @staticmethod
    def count_distinct(column: str) -> Aggregation:
        """Exact number of distinct non-null values. Empty: 0."""
        return Aggregation("count_distinct", _column(column))

    @staticmethod
    def approx_count_distinct(column: str) -> Aggregation:
        """Distinct non-null values, exact up to 1,024 and a HyperLogLog estimate above (2^12
        registers, about 1.6% standard error) — the same bits whatever the order or tiling."""
        return Aggregation("approx_count_distinct", _column(column))

    @staticmethod
    def approx_percentile(column: str, quantile: float) -> Aggregation:
        """The ``quantile`` (nearest rank) of the finite non-null values, to within 0.4% relative
        error (a log-linear histogram with fixed buckets: deterministic). Empty: null."""
        q = Fraction(str(quantile)) if isinstance(quantile, float) else Fraction(quantile)
        if not 0 <= q <= 1 or q.denominator > 1_000_000:
            raise DefinitionError(f"approx_percentile: quantile must be between 0 and 1 with at most 6 decimals, "
                                  f"got {quantile!r}", location=caller_location())
        return Aggregation("approx_percentile", _column(column), quantile=q)


def _column(column: str) -> str:
    if not isinstance(column, str) or not column:
        raise DefinitionError(f"an aggregation takes a column name, not {column!r}", location=caller_location())
    return column


agg = _Agg()


@dataclass(frozen=True)
class Aggregate:
    """One windowed feature: an aggregation, over some widths (default: the view's), optionally
    over the events that pass ``where`` only."""

    name: str
    aggregation: Aggregation
    windows: tuple[Width, ...] | None = None
    where: Expr | None = None
    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    location: str = field(default="", compare=False, repr=False)

    def __init__(
        self,
        name: str,
        aggregation: Aggregation,
        *,
        windows: Sequence[str | dt.timedelta] | None = None,
        where: Expr | None = None,
        description: str = "",
        owner: str | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        location = caller_location()
        set_ = object.__setattr__
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("__"):
            raise DefinitionError(f"feature name {name!r} must be a Python identifier not starting with '__'",
                                  location=location)
        if not isinstance(aggregation, Aggregation):
            raise DefinitionError(f"feature {name!r}: give an aggregation such as agg.count() or agg.sum('amount'), "
                                  f"not {aggregation!r}", location=location)
        if where is not None and not isinstance(where, Expr):
            raise DefinitionError(f"feature {name!r}: where= takes a filter such as col('amount') > 100, not "
                                  f"{where!r}", location=location)
        set_(self, "name", name)
        set_(self, "aggregation", aggregation)
        set_(self, "windows", None if windows is None else _widths(windows, f"feature {name!r}", location))
        set_(self, "where", where)
        set_(self, "description", description)
        set_(self, "owner", owner)
        set_(self, "tags", tuple(tags))
        set_(self, "location", location)


def _widths(values: Sequence[str | dt.timedelta], what: str, location: str) -> tuple[Width, ...]:
    if isinstance(values, str | dt.timedelta):
        values = [values]
    try:
        widths = [parse_width(v, what) for v in values]
    except DefinitionError as exc:
        raise DefinitionError(str(exc), location=location) from None
    if not widths:
        raise DefinitionError(f"{what}: give at least one window width", location=location)
    seen: dict[Width, str] = {}
    for value, width in zip(values, widths):
        if width in seen:
            raise DefinitionError(f"{what}: windows {seen[width]!r} and {value!r} are the same width", location=location)
        seen[width] = str(value)
    return tuple(widths)


_NUMERIC = ("Int64", "Float64")


def _side_type(expr: Expr, columns: Mapping[str, DType]) -> str:
    """What one side of a comparison holds: a dtype name, or the Python type of a literal."""
    if isinstance(expr, Col):
        return columns[expr.name].name
    if isinstance(expr, Lit):
        value = expr.value
        if value is None:
            return "None"
        return {bool: "Bool", int: "int", float: "float", str: "String"}[type(value)]
    return "Bool"  # a nested comparison or logical expression


def _comparable(a: str, b: str) -> bool:
    numeric = {"Int64", "Float64", "int", "float"}
    if a in numeric and b in numeric:
        return not (a in ("int", "float") and b in ("int", "float"))
    return a == b and a not in ("None",)


def check_filter(expr: Expr, columns: Mapping[str, DType], what: str) -> None:
    """A filter must be a condition whose comparisons each compare like with like (checked when the
    definition loads, so no event can fail it later)."""
    if isinstance(expr, Col):
        if columns[expr.name].name != "Bool":
            raise DefinitionError(f"{what}: where=col({expr.name!r}) needs a Bool column; compare it instead, "
                                  f"e.g. col({expr.name!r}) > 0")
        return
    if isinstance(expr, Lit):
        raise DefinitionError(f"{what}: a filter cannot be the constant {expr.value!r}")
    if isinstance(expr, Compare):
        a, b = _side_type(expr.left, columns), _side_type(expr.right, columns)
        if "None" in (a, b):
            raise DefinitionError(f"{what}: comparing with None is never true (SQL logic); use .is_null() or "
                                  f".is_not_null()")
        timed = a in ("Timestamp", "Date") or b in ("Timestamp", "Date")
        if timed and not (isinstance(expr.left, Col) and isinstance(expr.right, Col) and a == b):
            raise DefinitionError(f"{what}: a {a if a in ('Timestamp', 'Date') else b} column compares with "
                                  f"another column of its type only")
        if not _comparable(a, b):
            raise DefinitionError(f"{what}: the filter compares {a} with {b}; compare numbers with numbers, "
                                  f"strings with strings, booleans with booleans")
        if a == "Bool" and expr.op not in ("==", "!="):
            raise DefinitionError(f"{what}: booleans compare with == and != only")
        for side in (expr.left, expr.right):
            if not isinstance(side, Col | Lit):
                raise DefinitionError(f"{what}: compare columns and values, not conditions")
        return
    if isinstance(expr, Logical):
        for part in expr.parts:
            check_filter(part, columns, what)
        return
    if isinstance(expr, Not):
        check_filter(expr.part, columns, what)
        return
    if isinstance(expr, IsIn):
        if not isinstance(expr.part, Col):
            raise DefinitionError(f"{what}: is_in applies to a column")
        dtype = columns[expr.part.name].name
        for value in expr.values:
            kind = _side_type(Lit(value), columns)
            if kind != "None" and not _comparable(dtype, kind):
                raise DefinitionError(f"{what}: is_in on {dtype} column {expr.part.name!r} lists {value!r} ({kind})")
        return
    if isinstance(expr, IsNull):
        if not isinstance(expr.part, Col):
            raise DefinitionError(f"{what}: is_null applies to a column")
        return
    raise DefinitionError(f"{what}: not a filter: {expr!r}")


def feature_columns(feature: Aggregate) -> set[str]:
    """The event columns one aggregate reads: its column and its filter's."""
    needed = feature.where.columns() if feature.where is not None else set()
    if feature.aggregation.column is not None:
        needed.add(feature.aggregation.column)
    return needed


@dataclass(frozen=True, eq=False)
class WindowView:
    """Window aggregations of one entity over the events of one source.

    ``columns`` declares the event columns the aggregates and filters read, with their dtypes
    (a stream source's schema gives them when omitted). ``windows`` is the default list of widths.
    ``key_columns`` maps the entity's keys to the source's columns when their names differ.
    """

    name: str
    entity: Entity
    source: Source
    columns: Mapping[str, DType]
    windows: tuple[Width, ...]
    features: tuple[Aggregate, ...]
    key_columns: Mapping[str, str]
    description: str
    owner: str | None
    tags: tuple[str, ...]
    location: str

    def __init__(
        self,
        name: str,
        *,
        entity: Entity,
        source: Source,
        features: Iterable[Aggregate],
        windows: Sequence[str | dt.timedelta] = (LIFETIME,),
        columns: Mapping[str, DType] | None = None,
        key_columns: Mapping[str, str] | None = None,
        description: str = "",
        owner: str | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        location = caller_location()
        set_ = object.__setattr__
        if not isinstance(name, str) or not name.isidentifier():
            raise DefinitionError(f"window view name {name!r} must be a Python identifier", location=location)
        what = f"window view {name!r}"
        if columns is None:
            columns = getattr(source, "schema", None) or {}
        set_(self, "name", name)
        set_(self, "entity", entity)
        set_(self, "source", source)
        set_(self, "columns", dict(columns))
        set_(self, "windows", _widths(windows, what, location))
        set_(self, "features", tuple(features))
        set_(self, "key_columns", dict(key_columns or {}))
        set_(self, "description", description)
        set_(self, "owner", owner)
        set_(self, "tags", tuple(tags))
        set_(self, "location", location)
        for column, dtype in self.columns.items():
            check_column_name(column, f"{what}, column {column!r}", location)
            if not isinstance(dtype, DType) or (dtype not in SCALARS):
                raise DefinitionError(f"{what}: column {column!r} needs a scalar dtype such as Float64, got {dtype!r}",
                                      location=location)
        for key, column in self.key_columns.items():
            check_column_name(column, f"{what}, key {key!r}", location)
        unknown = set(self.key_columns) - set(entity.keys)
        if unknown:
            raise DefinitionError(f"{what}: key_columns names {sorted(unknown)}, which are not keys of entity "
                                  f"{entity.name!r} (its keys: {list(entity.keys)})", location=location)
        if not self.features:
            raise DefinitionError(f"{what} has no features", location=location)
        names: set[str] = set()
        for feature in self.features:
            if not isinstance(feature, Aggregate):
                raise DefinitionError(f"{what}: features must be Aggregate(...), not {feature!r}", location=location)
            if feature.name in names:
                raise DefinitionError(f"{what}: feature {feature.name!r} is defined twice", location=feature.location)
            names.add(feature.name)
            missing = sorted(feature_columns(feature) - set(self.columns))
            if missing:
                raise DefinitionError(f"{what}, feature {feature.name!r}: column(s) {missing} are not declared; add "
                                      f"them to columns={{...}} with their dtypes", location=feature.location)
            try:
                self.output_dtype(feature)
                if feature.where is not None:
                    check_filter(feature.where, self.columns, f"{what}, feature {feature.name!r}")
            except DefinitionError as exc:
                raise DefinitionError(str(exc), location=feature.location) from None

    def widths_of(self, feature: Aggregate) -> tuple[Width, ...]:
        return feature.windows if feature.windows is not None else self.windows

    def output_dtype(self, feature: Aggregate) -> DType:
        column = feature.aggregation.column
        return feature.aggregation.output_dtype(
            None if column is None else self.columns.get(column), f"window view {self.name!r}, feature {feature.name!r}"
        )

    def source_key(self, key: str) -> str:
        return self.key_columns.get(key, key)

    def __repr__(self) -> str:
        return f"WindowView({self.name!r})"
