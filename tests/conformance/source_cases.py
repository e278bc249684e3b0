"""The cases every source is held to, written once as logical rows, and the reference answer.

A case is a table of logical values (what the rows *mean*), how each column is typed, the
feature view over it and the (key, t) probes to ask. ``writers.py`` stores the rows natively in
each system (its own column types: ``real``, ``numeric``, ``BIT(1)``, ``DATETIME``...); the
reference below computes the answer from the logical rows with the rules of DESIGN.md written
out plainly — and with pandas, not parity, for the wall-clock → instant rule at DST changes.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import parity as pt

UTC = dt.UTC
BERLIN = "Europe/Berlin"
ERROR = "<error>"  # the expected answer when a value does not fit its dtype: an error on every path


def T(day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, minute, second, us, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    name: str
    columns: dict[str, str]  # column -> logical type (see writers.NATIVE)
    rows: list[tuple[object, ...]]  # in ingestion order
    key: tuple[str, pt.DType]
    features: list[tuple[str, str, pt.DType]]  # (feature, column, dtype)
    probes: list[tuple[object, dt.datetime]]  # (key value, t)
    event: str = "ev"
    created: str | None = None
    timezone: str | None = None
    table: str = "rows"
    expect_override: Callable[[str, object], object] | None = None  # (feature, stored value) -> value
    error: bool = False  # every path must refuse the data with a clear error
    gaps: dict[str, str] = field(default_factory=dict)  # source kind -> why it cannot hold this case

    def column_index(self, name: str) -> int:
        return list(self.columns).index(name)


def instant(case: Case, column: str, value: object) -> dt.datetime | None:
    """The UTC instant of a raw time value (the rule of semantics.time, written with pandas)."""
    if value is None:
        return None
    kind = case.columns[column]
    if kind == "ts_aware":
        return value.astimezone(UTC)  # type: ignore[union-attr]
    if kind == "unix":
        return dt.datetime.fromtimestamp(value, UTC)  # type: ignore[arg-type]
    if kind == "date":
        midnight = pd.Timestamp(dt.datetime.combine(value, dt.time()))  # type: ignore[arg-type]
        stamp = midnight.tz_localize(case.timezone or "UTC", ambiguous=True, nonexistent="shift_forward")
        return stamp.tz_convert("UTC").to_pydatetime()
    if kind == "ts_naive":
        # ambiguous=True reads a repeated wall time as its DST (first) occurrence: the earliest
        stamp = pd.Timestamp(value).tz_localize(case.timezone, ambiguous=True, nonexistent="shift_forward")
        return stamp.tz_convert("UTC").to_pydatetime()
    raise AssertionError(kind)


def logical_value(case: Case, column: str, value: object, dtype: pt.DType) -> object:
    """What a stored value reads as for a feature of ``dtype`` (or ERROR when it does not fit)."""
    if value is None:
        return None
    kind = case.columns[column]
    if kind == "float32":
        return float(np.float32(value))
    if kind == "decimal":
        d = decimal.Decimal(value)  # type: ignore[arg-type]
        if dtype == pt.Int64:
            return int(d) if d == d.to_integral_value() else ERROR
        return float(d)
    return value


_EXPECTED: dict[str, list[dict[str, object]]] = {}


def expected(case: Case) -> list[dict[str, object]]:
    """For each probe, {feature: value} — the as-of rule over the logical rows."""
    if case.name not in _EXPECTED:
        _EXPECTED[case.name] = _expected(case)
    return _EXPECTED[case.name]


def _expected(case: Case) -> list[dict[str, object]]:
    cols = list(case.columns)
    key_col = case.key[0]
    by_key: dict[object, list[tuple[int, dict[str, object]]]] = {}
    for position, row in enumerate(case.rows):
        values = dict(zip(cols, row))
        by_key.setdefault(values[key_col], []).append((position, values))
    out = []
    for key, t in case.probes:
        best = None
        for position, values in by_key.get(key, []):
            event = instant(case, case.event, values[case.event])
            if event is None or event > t:
                continue  # a row without an event time is never visible
            created = instant(case, case.created, values[case.created]) if case.created else None
            known = created if created is not None else event
            if case.created and known > t:
                continue
            # Two wall times in a skipped hour are one instant: the later wall time comes first.
            wall = values[case.event] if case.columns[case.event] == "ts_naive" else event
            rank = (event, wall, known, position)
            if best is None or rank > best[0]:
                best = (rank, values)
        answer = {}
        for feature, column, dtype in case.features:
            value = None if best is None else logical_value(case, column, best[1][column], dtype)
            answer[feature] = value
        out.append(answer)
    return out


# --- the cases -------------------------------------------------------------------------------------

NULL_EVENT = Case(
    "null-event-time",
    {"k": "int", "ev": "ts_aware", "cr": "ts_aware", "v": "string"},
    [
        (1, T(1), T(1), "k1 day 1"),
        (1, None, T(2), "k1 no event, created day 2"),  # GREATEST(NULL, created) once made this visible
        (1, None, None, "k1 no event, no created"),
        (2, None, T(1), "k2 only a row without event time"),
        (3, T(2), None, "k3 day 2, no created"),
    ],
    key=("k", pt.Int64), features=[("v", "v", pt.String)], created="cr",
    probes=[(1, T(3)), (2, T(3)), (3, T(3)), (1, T(1)), (3, T(1))],
)

STRING_KEYS = Case(
    "string-keys-by-bytes",
    {"k": "string", "ev": "ts_aware", "v": "string"},
    [("a", T(1), "lower a"), ("A", T(1), "upper A"), ("b", T(1), "b"), ("b ", T(2), "b and a space"),
     ("é", T(1), "e acute"), ("e", T(2), "plain e"), ("ß", T(1), "sharp s"), ("ss", T(2), "double s")],
    key=("k", pt.String), features=[("v", "v", pt.String)],
    probes=[("a", T(3)), ("A", T(3)), ("b", T(3)), ("b ", T(3)), ("é", T(3)), ("e", T(3)), ("B", T(3)),
            ("ß", T(3)), ("ss", T(3)), ("E", T(3))],
)

REAL = Case(
    "real-widened-exactly",
    {"k": "int", "ev": "ts_aware", "x": "float32"},
    [(1, T(1), 0.1), (2, T(1), 1 / 3), (3, T(1), -2.5), (4, T(1), None), (5, T(1), 16777217.0)],
    key=("k", pt.Int64), features=[("x", "x", pt.Float64)],
    probes=[(k, T(2)) for k in (1, 2, 3, 4, 5)],
    gaps={"sqlite": "SQLite's REAL is an 8-byte double: it has no 32-bit float column to widen"},
)

NUMERIC = Case(
    "numeric-as-float-and-int",
    {"k": "int", "ev": "ts_aware", "d": "decimal", "n": "decimal"},
    [(1, T(1), "1.50", "3.00"), (2, T(1), "-2.25", "-7.00"), (3, T(1), None, None), (4, T(1), "0.10", "0.00")],
    key=("k", pt.Int64), features=[("d", "d", pt.Float64), ("n", "n", pt.Int64)],
    probes=[(k, T(2)) for k in (1, 2, 3, 4)],
    gaps={"sqlite": "SQLite has no decimal column type (it stores such values as REAL or TEXT)"},
)

NUMERIC_FRACTION = Case(
    "numeric-fraction-into-int-refused",
    {"k": "int", "ev": "ts_aware", "n": "decimal"},
    [(1, T(1), "3.00"), (2, T(1), "1.50")],
    key=("k", pt.Int64), features=[("n", "n", pt.Int64)], probes=[(1, T(2)), (2, T(2))], error=True,
    gaps={"sqlite": "SQLite has no decimal column type"},
)

BOOL = Case(
    "bool-and-bit",
    {"k": "int", "ev": "ts_aware", "flag": "bool"},
    [(1, T(1), True), (2, T(1), False), (3, T(1), None), (2, T(2), True), (2, T(3), False)],
    key=("k", pt.Int64), features=[("flag", "flag", pt.Bool)],
    probes=[(1, T(4)), (2, T(4)), (3, T(4)), (2, T(2)), (2, T(1))],
)

DATE_EVENT = Case(
    "date-event-time",
    {"k": "int", "ev": "date", "v": "string"},
    [(1, dt.date(2024, 1, 2), "jan 2"), (1, dt.date(2024, 1, 5), "jan 5"), (2, dt.date(2024, 1, 3), "k2 jan 3")],
    key=("k", pt.Int64), features=[("v", "v", pt.String)],
    probes=[(1, T(2)), (1, T(1, 23, 59, 59, 999999)), (1, T(5)), (1, T(4, 23)), (2, T(3)), (2, T(2, 12))],
)

DATE_EVENT_ZONE = Case(
    "date-event-time-in-zone",
    {"k": "int", "ev": "date", "v": "string"},
    [(1, dt.date(2024, 1, 2), "jan 2"), (1, dt.date(2024, 1, 5), "jan 5")],
    key=("k", pt.Int64), features=[("v", "v", pt.String)], timezone=BERLIN,
    # midnight in Berlin is 23:00 UTC the day before
    probes=[(1, T(1, 23)), (1, T(1, 22, 59, 59, 999999)), (1, T(4, 23)), (1, T(4, 22))],
)

UNIX_EVENT = Case(
    "unix-seconds-event-time",
    {"k": "int", "ev": "unix", "v": "string"},
    [(1, int(T(2).timestamp()), "jan 2"), (1, int(T(2, 12).timestamp()), "jan 2 noon"),
     (2, int(T(3).timestamp()), "k2")],
    key=("k", pt.Int64), features=[("v", "v", pt.String)],
    probes=[(1, T(2)), (1, T(1, 23, 59, 59, 999999)), (1, T(2, 12)), (1, T(2, 11, 59, 59, 999999)), (2, T(4))],
)


def _berlin(y: int, mo: int, d: int, h: int, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi)


def _utc(y: int, mo: int, d: int, h: int, mi: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, 0, us, tzinfo=UTC)


NAIVE_DST = Case(
    "naive-wall-times-at-dst-changes",
    {"k": "int", "ev": "ts_naive", "v": "string"},
    [
        (1, _berlin(2024, 3, 31, 1, 59), "before the spring gap"),  # 00:59 UTC
        (2, _berlin(2024, 3, 31, 2, 30), "inside the spring gap"),  # does not exist: 03:00 CEST = 01:00 UTC
        (3, _berlin(2024, 10, 27, 2, 30), "repeated half hour"),  # twice: earliest = 00:30 UTC
        (4, _berlin(2024, 10, 27, 3, 30), "after the repeat"),  # 02:30 UTC
        (4, _berlin(2024, 10, 27, 2, 15), "k4 repeated quarter"),  # earliest = 00:15 UTC
        # both inside the spring gap, so both 01:00 UTC: the later wall time wins, not the later row
        (5, _berlin(2024, 3, 31, 2, 40), "k5 gap, later wall"),
        (5, _berlin(2024, 3, 31, 2, 10), "k5 gap, earlier wall, later row"),
    ],
    key=("k", pt.Int64), features=[("v", "v", pt.String)], timezone=BERLIN,
    probes=[
        (1, _utc(2024, 3, 31, 0, 59)), (1, _utc(2024, 3, 31, 0, 58, 999999)),
        (2, _utc(2024, 3, 31, 1, 0)), (2, _utc(2024, 3, 31, 0, 59, 59)),
        (3, _utc(2024, 10, 27, 0, 30)), (3, _utc(2024, 10, 27, 0, 29, 999999)),
        (3, _utc(2024, 10, 27, 1, 30)),  # the second 02:30: the row (first 02:30) is long visible
        (4, _utc(2024, 10, 27, 1, 45)), (4, _utc(2024, 10, 27, 2, 30)), (4, _utc(2024, 10, 27, 2, 29)),
        (4, _utc(2024, 10, 27, 0, 14)),
        (5, _utc(2024, 3, 31, 1, 0)), (5, _utc(2024, 3, 31, 0, 59, 59)),
    ],
)

AWARE_WITH_ZONE = Case(
    "aware-times-ignore-a-declared-zone",
    {"k": "int", "ev": "ts_aware", "cr": "ts_aware", "v": "string"},
    [(1, T(2, 12), T(2, 12), "noon"), (1, T(2, 12, 30), T(2, 12, 30), "half past twelve"),
     (2, T(2, 11), T(2, 13), "k2 late arrival")],
    key=("k", pt.Int64), features=[("v", "v", pt.String)], created="cr", timezone=BERLIN,
    probes=[(1, T(2, 12)), (1, T(2, 12, 29, 59)), (1, T(2, 12, 30)), (2, T(2, 12)), (2, T(2, 13))],
)

PERCENT_NAMES = Case(
    "percent-in-identifiers",
    {"k%s": "int", "ev%": "ts_aware", "v%41": "string"},
    [(1, T(1), "one"), (2, T(1), "two"), (1, T(2), "one later")],
    key=("k%s", pt.Int64), features=[("v", "v%41", pt.String)], event="ev%", table="t%s_%41",
    probes=[(1, T(3)), (2, T(3)), (1, T(1))],
)

FULL_TIES = Case(
    "full-ties-without-sequence",
    {"k": "int", "ev": "ts_aware", "cr": "ts_aware", "v": "string"},
    [(1, T(2), T(2), "first"), (1, T(2), T(2), "second"), (2, T(1), None, "k2 first"), (1, T(2), T(2), "third"),
     (2, T(1), None, "k2 second")],
    key=("k", pt.Int64), features=[("v", "v", pt.String)], created="cr",
    probes=[(1, T(3)), (2, T(3))],
)

MANY = 70_000
MANY_KEYS = Case(
    "seventy-thousand-keys",
    {"k": "int", "ev": "ts_aware", "v": "string"},
    [(k, T(1), f"value {k}") for k in range(MANY)],
    key=("k", pt.Int64), features=[("v", "v", pt.String)],
    probes=[(k, T(2)) for k in range(MANY)],
)

CASES = [NULL_EVENT, STRING_KEYS, REAL, NUMERIC, NUMERIC_FRACTION, BOOL, DATE_EVENT, DATE_EVENT_ZONE, UNIX_EVENT,
         NAIVE_DST, AWARE_WITH_ZONE, PERCENT_NAMES, FULL_TIES, MANY_KEYS]
