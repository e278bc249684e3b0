"""Windows: which events a window aggregate covers, and the exact arithmetic of every aggregate.

**The rule.** The window of width w at time t holds the events *visible at t*
(``semantics.visibility``: event time ≤ t and, where the source uses created/ingested times, that
time ≤ t as well; never an event without an event time) with **t − w < event time ≤ t**. The
lifetime window drops the lower bound. Events are ordered as everywhere else
(``semantics.ordering``: event time, created time, ingestion order), which decides ``first``,
``last`` and ``last_n_distinct``. An aggregate reads the events that pass its filter and whose
column is not null.

**Exact states, rounded once.** Every numeric aggregate is computed from exact integer states:
an Int64 value is itself; a finite Float64 value x is the integer x·2^1074 (every double is a
multiple of 2^-1074). Count, sum and sum of squares are sums of such integers — exact, so any
order, tiling, prefix difference or engine gives the same state — and a value is rounded to a
double exactly once, when it is read (``ratio_to_float``: correctly rounded). NaN and ±inf are
counted apart: a sum or mean with a NaN, or with both infinities, is NaN; with one infinity it is
that infinity; a variance with any of them is NaN.

* sum: the exact sum (Int64 stays Int64; outside the Int64 range it is an error). Empty: 0.
* mean: exact sum / n. var: (n·Σx² − (Σx)²) / (n·(n − 1)), the sample variance; std: √var
  (IEEE square root of the rounded variance). Fewer values than needed: null.
* min / max: by the total order of the dtype; for floats NaN is above every number and -0.0 is
  below 0.0 (so the bits of the answer are defined).
* count_distinct: distinct values by their canonical form (``semantics.keys``: -0.0 is 0.0,
  every NaN one NaN). last_n_distinct: the newest n distinct canonical values, newest first.
* approx_count_distinct: the exact count up to ``EXACT_DISTINCT``; above, a HyperLogLog estimate
  from 2^12 registers of a fixed 64-bit hash of the canonical value. Registers merge by maximum
  (order-free), and the estimate is one fixed function of the registers, so the same events give
  the same bits whatever the tiling (unlike DataSketches' HIP estimator).
* approx_percentile: over finite values, nearest rank r = max(1, ⌈q·n⌉); the answer is the
  representative of the r-th smallest value's bucket in a fixed log-linear histogram (the top
  7 mantissa bits of the double: relative error ≤ 2^-8). Buckets are a monotone function of the
  value and counts merge by addition, so the answer depends on the multiset of values only.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

from parity.errors import DataError

if TYPE_CHECKING:
    import polars as pl

FLOAT_SHIFT = 1074  # a finite double x is exactly the integer x·2^FLOAT_SHIFT
EXACT_DISTINCT = 1024  # approx_count_distinct is exact up to this many distinct values
HLL_P = 12
HLL_M = 1 << HLL_P
BUCKET_BITS = 7  # mantissa bits a histogram bucket keeps
_MANTISSA_DROP = 52 - BUCKET_BITS
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_QNAN = struct.unpack("<q", struct.pack("<d", math.nan))[0]
_SIGN = 1 << 63


def bounds(t_us: int, width: int | None) -> tuple[int | None, int]:
    """The window at t as (after, until): events with after < event time ≤ until (after None: no bound)."""
    return (None if width is None else t_us - width), t_us


# --- exact numbers -----------------------------------------------------------------------------


def exact_float(x: float) -> int:
    """A finite double as the exact integer x·2^1074."""
    mantissa, exponent = math.frexp(x)
    shift = exponent - 53 + FLOAT_SHIFT
    whole = int(math.ldexp(mantissa, 53))
    return whole << shift if shift >= 0 else whole >> -shift  # a subnormal's low bits are zero: exact


def ratio_to_float(numerator: int, denominator: int) -> float:
    """numerator / denominator (denominator > 0) correctly rounded; ±inf past the double range."""
    try:
        return numerator / denominator
    except OverflowError:
        return math.inf if numerator > 0 else -math.inf


class Moments:
    """The additive state of a numeric column over a set of events: how many values, their exact
    sum and sum of squares, and how many NaN / +inf / -inf. ``scale`` is 1 (Int64) or 2^1074."""

    __slots__ = ("n", "nan", "neg_inf", "pos_inf", "sum", "sumsq")

    def __init__(self) -> None:
        self.n = self.sum = self.sumsq = self.nan = self.pos_inf = self.neg_inf = 0

    def add(self, value: float, is_float: bool) -> None:
        self.n += 1
        if is_float:
            x = float(value)
            if math.isnan(x):
                self.nan += 1
                return
            if math.isinf(x):
                if x > 0:
                    self.pos_inf += 1
                else:
                    self.neg_inf += 1
                return
            exact = exact_float(x)
        else:
            exact = int(value)
        self.sum += exact
        self.sumsq += exact * exact

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        return (self.n, self.sum, self.sumsq, self.nan, self.pos_inf, self.neg_inf)


def _special(nan: int, pos_inf: int, neg_inf: int) -> float | None:
    if nan or (pos_inf and neg_inf):
        return math.nan
    if pos_inf:
        return math.inf
    if neg_inf:
        return -math.inf
    return None


def lower_sum(state: Sequence[int], is_float: bool, feature: str = "") -> float | int:
    _, total, _, nan, pos_inf, neg_inf = state
    if not is_float:
        if not INT64_MIN <= total <= INT64_MAX:  # the message is built only here, off the hot path
            raise DataError(f"feature {feature!r}: a window sum is {total}, outside the Int64 range; sum a "
                            f"Float64 column instead")
        return total
    special = _special(nan, pos_inf, neg_inf)
    if special is not None:
        return special
    return ratio_to_float(total, 1 << FLOAT_SHIFT)


def lower_mean(state: Sequence[int], is_float: bool) -> float | None:
    n, total, _, nan, pos_inf, neg_inf = state
    if n == 0:
        return None
    special = _special(nan, pos_inf, neg_inf)
    if special is not None:
        return special
    return ratio_to_float(total, n << FLOAT_SHIFT if is_float else n)


def lower_var(state: Sequence[int], is_float: bool) -> float | None:
    n, total, sumsq, nan, pos_inf, neg_inf = state
    if n < 2:
        return None
    if nan or pos_inf or neg_inf:
        return math.nan
    denominator = n * (n - 1)
    if is_float:
        denominator <<= 2 * FLOAT_SHIFT
    return ratio_to_float(n * sumsq - total * total, denominator)


def lower_std(state: Sequence[int], is_float: bool) -> float | None:
    var = lower_var(state, is_float)
    return None if var is None else math.sqrt(var) if not math.isnan(var) else math.nan


# --- orders and canonical forms ---------------------------------------------------------------


def float_order_key(x: float) -> int:
    """An int64 whose order is the total order of doubles parity uses (NaN greatest, -0.0 < 0.0)."""
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    if math.isnan(x):
        bits = _QNAN
    return bits if bits >= 0 else bits ^ 0x7FFFFFFFFFFFFFFF


def order_key(value: object, is_float: bool) -> int:
    """The key min and max compare (Int64, Float64, Timestamp and Date columns, in storage form)."""
    return float_order_key(value) if is_float else value  # type: ignore[arg-type, return-value]


def extreme(value: object) -> object:
    """What min and max return: the value, except that every NaN is the one NaN — NaNs tie in the
    order (``float_order_key``), so which of them an engine or a window set meets first must not
    show in the answer's bits."""
    return math.nan if isinstance(value, float) and math.isnan(value) else value


def extreme_series(values: pl.Series) -> pl.Series:
    """``extreme`` over a column of min/max values (the offline engine's form of the rule)."""
    import polars as pl

    return values.fill_nan(math.nan) if values.dtype == pl.Float64 else values


def canonical(value: object) -> object:
    """The form by which values are distinct: -0.0 is 0.0 and every NaN is one NaN."""
    if isinstance(value, float):
        if math.isnan(value):
            return math.nan
        if value == 0.0:
            return 0.0
    return value


def _hash_bytes(value: object) -> bytes:
    # One encoding per dtype's storage form; bool before int (a bool is an int in Python).
    if isinstance(value, bool):
        return b"b1" if value else b"b0"
    if isinstance(value, int):
        return b"i" + value.to_bytes(8, "little", signed=True)
    if isinstance(value, float):
        return b"f" + struct.pack("<d", canonical(value))
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    raise TypeError(f"cannot hash {type(value).__name__}")


def value_hash(value: object) -> int:
    """A fixed 64-bit hash of a value's canonical form (the same on every path and machine)."""
    return int.from_bytes(hashlib.blake2b(_hash_bytes(value), digest_size=8).digest(), "little", signed=True)


def hll_registers(hashes: Sequence[int]) -> list[int]:
    registers = [0] * HLL_M
    for h in hashes:
        u = h & 0xFFFFFFFFFFFFFFFF
        index = u >> (64 - HLL_P)
        rest = u & ((1 << (64 - HLL_P)) - 1)
        rank = (64 - HLL_P) - rest.bit_length() + 1
        registers[index] = max(registers[index], rank)
    return registers


def hll_estimate(registers: Sequence[int]) -> int:
    """The fixed estimator: raw HyperLogLog with linear counting for small cardinalities, the sum
    of 2^-register computed exactly (so it cannot depend on an addition order)."""
    m = HLL_M
    top = 64 - HLL_P + 1
    total = sum(1 << (top - r) for r in registers)  # Σ 2^-r, scaled by 2^top
    alpha = 0.7213 / (1 + 1.079 / m)
    estimate = alpha * m * m * (1 << top) / total
    zeros = sum(1 for r in registers if r == 0)
    if estimate <= 2.5 * m and zeros:
        estimate = m * math.log(m / zeros)
    return round(estimate)


def approx_distinct(values: Sequence[object]) -> int:
    """approx_count_distinct of the window's (non-null) values."""
    distinct = {canonical(v) for v in values}  # canonical() returns the one NaN object: a set keeps one
    if len(distinct) <= EXACT_DISTINCT:
        return len(distinct)
    return hll_estimate(hll_registers([value_hash(v) for v in distinct]))


def bucket(x: float) -> int:
    """The histogram bucket of a finite double: monotone in x, 0 for ±0.0, negative below zero."""
    if x == 0.0:
        return 0
    bits = struct.unpack("<q", struct.pack("<d", abs(x)))[0]
    index = (bits >> _MANTISSA_DROP) + 1
    return index if x > 0 else -index


def percentile_bucket(x: object) -> int | None:
    """The bucket an approx_percentile counts a value in (an Int64 as its double); None for NaN
    and ±inf, which no percentile counts."""
    f = float(x)  # type: ignore[arg-type]
    return bucket(f) if math.isfinite(f) else None


def bucket_value(index: int) -> float:
    """The value a bucket stands for: the middle of its range (its lower end for the last bucket)."""
    if index == 0:
        return 0.0
    magnitude = abs(index) - 1
    lower = struct.unpack("<d", struct.pack("<q", magnitude << _MANTISSA_DROP))[0]
    upper_bits = (magnitude + 1) << _MANTISSA_DROP
    upper = struct.unpack("<d", struct.pack("<q", upper_bits))[0] if upper_bits < 0x7FF0000000000000 else math.inf
    value = lower if math.isinf(upper) else lower + (upper - lower) / 2
    return value if index > 0 else -value


def percentile_rank(quantile: Fraction, n: int) -> int:
    """The 1-based nearest rank of ``quantile`` among n values: max(1, ⌈q·n⌉)."""
    return max(1, -(-(quantile.numerator * n) // quantile.denominator))


def percentile_of_buckets(sorted_buckets: Sequence[int], quantile: Fraction) -> float | None:
    if not sorted_buckets:
        return None
    return bucket_value(sorted_buckets[percentile_rank(quantile, len(sorted_buckets)) - 1])


# --- events in order ---------------------------------------------------------------------------

VISIBLE = "__parity_visible"


def sorted_events(rows: pl.DataFrame, keys: Sequence[str], *, uses_created: bool) -> pl.DataFrame:
    """A scan's events ready for windows: rows without a key dropped (they belong to no entity),
    each row's visibility instant added (``VISIBLE``), sorted by key then ``ordering.ROW_ORDER``."""
    import polars as pl

    from parity.semantics.ordering import row_order
    from parity.semantics.visibility import visible_at_expr

    rows = rows.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys)) if keys else rows
    return rows.with_columns(visible_at_expr(uses_created).alias(VISIBLE)).sort([*keys, *row_order(rows.columns)])
