"""Profiles: what one feature version's values looked like over a stretch of time, without the values.

A profile holds exact counts (rows, nulls, NaN), the counts per bin of the feature version's fixed
bins (``monitor.bins``), the minimum and maximum, mean and M2 (Chan's parallel formula) of the
finite numbers, and for categorical features the most frequent values and the HyperLogLog
registers of the distinct values (``semantics.windows``' fixed hash and estimator: registers merge
by maximum, so a merged distinct count does not depend on the order of the merge). Profiles of
consecutive buckets ``merge`` into the profile of their union (hour → day) exactly for everything
drift and null rates are computed from; quantiles for display are read from the fine bins.

``profile_buckets`` profiles a whole column in one pass per kind of statistic, bucket by bucket
(vectorised: the cost of profiling 10M logged values is a handful of NumPy/Polars passes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from parity.monitor.bins import NUMERIC_DTYPES, Bins, numbers
from parity.semantics.windows import HLL_M, hll_estimate, hll_registers, value_hash

TOP_VALUES = 20  # the most frequent values a categorical profile keeps for display


@dataclass
class Profile:
    rows: int = 0
    nulls: int = 0
    nan: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    minimum: float | None = None
    maximum: float | None = None
    finite: int = 0  # the finite numbers mean and m2 are over
    mean: float = 0.0
    m2: float = 0.0
    top: dict[str, int] = field(default_factory=dict)
    registers: np.ndarray | None = None  # HyperLogLog, categorical features only

    @property
    def present(self) -> int:
        """Values counted in bins: not null, not NaN."""
        return int(self.counts.sum())

    @property
    def null_rate(self) -> float | None:
        return self.nulls / self.rows if self.rows else None

    @property
    def std(self) -> float | None:
        return math.sqrt(self.m2 / (self.finite - 1)) if self.finite > 1 else None

    def distinct(self) -> int | None:
        return None if self.registers is None else hll_estimate(self.registers.tolist())

    def quantile(self, bins: Bins, q: float) -> float | None:
        """The q-quantile read from the fine bins (linear inside a bin; exact at the min and max)."""
        n = self.present
        if bins.kind != "numeric" or n == 0 or self.minimum is None or self.maximum is None:
            return None
        if q <= 0.0 or q >= 1.0:
            return self.minimum if q <= 0.0 else self.maximum
        rank = q * (n - 1) + 1
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, rank, side="left"))
        lo = bins.edges[index - 1] if index > 0 else self.minimum
        hi = bins.edges[index] if index < len(bins.edges) else self.maximum
        lo, hi = max(lo, self.minimum), min(hi, self.maximum)
        before = int(cumulative[index - 1]) if index > 0 else 0
        inside = int(self.counts[index])
        share = (rank - before) / inside if inside else 0.0
        if lo > hi:  # an outer bin holding infinities beyond the finite extremes
            return hi if index > 0 else lo
        return lo + (hi - lo) * min(max(share, 0.0), 1.0)

    def merge(self, other: Profile) -> Profile:
        """The profile of both stretches (same feature version, same bins)."""
        n = self.finite + other.finite
        delta = other.mean - self.mean
        mean = self.mean * (self.finite / n) + other.mean * (other.finite / n) if n else 0.0  # cannot overflow
        m2 = self.m2 + other.m2 + delta * delta * self.finite * other.finite / n if n else 0.0
        top = dict(self.top)
        for value, count in other.top.items():
            top[value] = top.get(value, 0) + count
        registers = (other.registers if self.registers is None else self.registers if other.registers is None
                     else np.maximum(self.registers, other.registers))
        counts = other.counts if self.counts.size == 0 else self.counts if other.counts.size == 0 \
            else self.counts + other.counts
        return Profile(self.rows + other.rows, self.nulls + other.nulls, self.nan + other.nan, counts,
                       _pick(min, self.minimum, other.minimum), _pick(max, self.maximum, other.maximum),
                       n, mean, m2, _top(top), registers)

    def to_dict(self) -> dict[str, object]:
        return {"rows": self.rows, "nulls": self.nulls, "nan": self.nan, "counts": _sparse(self.counts),
                "size": int(self.counts.size), "min": self.minimum, "max": self.maximum, "finite": self.finite,
                "mean": self.mean, "m2": self.m2, "top": self.top,
                "registers": None if self.registers is None else _sparse(self.registers)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Profile:
        registers = data["registers"]
        return cls(int(data["rows"]), int(data["nulls"]), int(data["nan"]),  # type: ignore[call-overload]
                   _dense(data["counts"], int(data["size"]), np.int64),  # type: ignore[arg-type,call-overload]
                   data["min"], data["max"], int(data["finite"]), float(data["mean"]),  # type: ignore[arg-type,call-overload]
                   float(data["m2"]), dict(data["top"]),  # type: ignore[arg-type,call-overload]
                   None if registers is None else _dense(registers, HLL_M, np.uint8))  # type: ignore[arg-type]


def profile(values: pl.Series, bins: Bins) -> Profile:
    return profile_buckets(values, np.zeros(len(values), dtype=np.int64), 1, bins)[0]


def profile_buckets(values: pl.Series, buckets: np.ndarray, n_buckets: int, bins: Bins) -> list[Profile]:
    """One profile per bucket of ``values`` (``buckets[i]`` in 0..n_buckets-1 is row i's)."""
    buckets = np.asarray(buckets, dtype=np.int64)
    rows = np.bincount(buckets, minlength=n_buckets)
    null_mask = values.is_null().to_numpy()
    nulls = np.bincount(buckets[null_mask], minlength=n_buckets)
    profiles = [Profile(int(rows[b]), int(nulls[b])) for b in range(n_buckets)]
    if bins.kind == "untracked":
        return profiles
    present, where = values.filter(~values.is_null()), buckets[~null_mask]
    if bins.dtype in NUMERIC_DTYPES:  # as binned: numbers (times as µs), NaN counted apart, -0.0 as 0.0
        present = numbers(present)
        _numeric_stats(present, where, profiles)
        keep = ~present.is_nan().to_numpy()
        present, where = present.filter(pl.Series(keep)) + 0.0, where[keep]
    counts = _bin_counts(present, where, n_buckets, bins)
    for b in range(n_buckets):
        profiles[b].counts = counts[b]
    if bins.kind == "categorical":
        _categorical_stats(present, where, profiles)
    return profiles


def _bin_counts(present: pl.Series, where: np.ndarray, n_buckets: int, bins: Bins) -> np.ndarray:
    size = bins.size
    if bins.kind == "numeric":
        index = np.searchsorted(np.asarray(bins.edges), present.to_numpy(), side="right")
    else:
        index = present.replace_strict(list(bins.categories), list(range(len(bins.categories))),
                                       default=len(bins.categories), return_dtype=pl.Int64).to_numpy()
    flat = np.bincount(where * size + index, minlength=n_buckets * size)
    return flat.reshape(n_buckets, size).astype(np.int64)


def _numeric_stats(array_series: pl.Series, where: np.ndarray, profiles: list[Profile]) -> None:
    frame = pl.DataFrame({"b": where, "x": array_series})
    nan = frame.filter(pl.col("x").is_nan()).group_by("b").len()
    for b, n in nan.iter_rows():
        profiles[b].nan = int(n)
    stats = (frame.filter(pl.col("x").is_finite()).group_by("b")
             .agg(pl.len().alias("n"), pl.col("x").min().alias("lo"), pl.col("x").max().alias("hi"),
                  pl.col("x").mean().alias("mean"), pl.col("x").var(ddof=0).alias("var")))
    for b, n, lo, hi, mean, var in stats.iter_rows():
        p = profiles[b]
        p.finite, p.minimum, p.maximum, p.mean, p.m2 = int(n), float(lo), float(hi), float(mean), float(var) * n


def _categorical_stats(present: pl.Series, where: np.ndarray, profiles: list[Profile]) -> None:
    frame = pl.DataFrame({"b": where, "v": present}).group_by("b", "v").len()
    frame = frame.sort(["b", "len", "v"], descending=[False, True, False])
    hashes: dict[int, list[int]] = {}
    for b, value, n in frame.iter_rows():
        p = profiles[b]
        if len(p.top) < TOP_VALUES:
            p.top[_text(value)] = int(n)
        hashes.setdefault(b, []).append(value_hash(value))
    for b, found in hashes.items():
        profiles[b].registers = np.asarray(hll_registers(found), dtype=np.uint8)


def _text(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def _top(counts: dict[str, int]) -> dict[str, int]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
    return dict(ranked)


def _pick(choose: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)


def _sparse(array: np.ndarray) -> list[list[int]]:
    nonzero = np.flatnonzero(array)
    return [nonzero.tolist(), array[nonzero].tolist()]


def _dense(pairs: list[list[int]], size: int, dtype: type) -> np.ndarray:
    array: np.ndarray = np.zeros(size, dtype=dtype)
    array[np.asarray(pairs[0], dtype=np.int64)] = pairs[1]
    return array
