"""The bins a feature's values are counted in, fixed once per feature version by its baseline.

Every profile of one feature version — each training set's, each hour of served traffic, a
reference frame — counts into the same bins, so profiles are integer vectors that add up exactly
(hour → day, any merge order) and any two of them can be compared for drift without raw data.
This fixes what Evidently cannot precompute (it bins the reference and current data together,
evidently#1400/#506).

- **numeric** (Int64, Float64, Timestamp and Date as their stored numbers): ``FINE_BINS``
  equal-width bins over the baseline's [p0.1, p99.9], plus an underflow and an overflow bin
  (infinities fall there); NaN is counted apart, as are nulls. The fine grid is what K-S and
  Wasserstein are computed on (NannyML's 10,000-bin approximation, at 1,000 — the error is at most
  one bin, a thousandth of the baseline's range) and what quantiles are read from: deterministic,
  unlike a KLL sketch (the same data profiled twice gave different p90s, anchors/monitoring.md).
- **categorical** (String, Bool, and a numeric feature with at most ``FEW_VALUES`` distinct values
  in its baseline, Evidently's rule): the baseline's ``TOP_CATEGORIES`` most frequent values and one
  bin for every other value.
- **untracked** (lists): counts and nulls only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

FINE_BINS = 1000
TOP_CATEGORIES = 100
FEW_VALUES = 5
COARSE_BINS = 10  # the quantile groups of the fine bins PSI and the contributing bins are shown on

Kind = Literal["numeric", "categorical", "untracked"]
NUMERIC_DTYPES = ("Int64", "Float64", "Timestamp", "Date")


def numbers(values: pl.Series) -> pl.Series:
    """Values as the numbers they are binned by (times as µs since the epoch, dates as days)."""
    if values.dtype == pl.Datetime:
        return values.dt.epoch("us").cast(pl.Float64)
    if values.dtype == pl.Date:
        return values.cast(pl.Int32).cast(pl.Float64)
    return values.cast(pl.Float64)


@dataclass(frozen=True)
class Bins:
    kind: Kind
    dtype: str
    edges: tuple[float, ...] = ()  # numeric: FINE_BINS + 1 edges; bin i holds edges[i-1] <= x < edges[i]
    categories: tuple[object, ...] = ()  # categorical: one bin each, then one for every other value

    @property
    def size(self) -> int:
        if self.kind == "numeric":
            return len(self.edges) + 1
        return len(self.categories) + 1 if self.kind == "categorical" else 0

    @classmethod
    def from_baseline(cls, values: pl.Series, dtype: str) -> Bins:
        """The bins of a feature whose baseline values (nulls included) are ``values``."""
        present = values.drop_nulls()
        if dtype.startswith("List("):
            return cls("untracked", dtype)
        if dtype in NUMERIC_DTYPES:
            finite = numbers(present)
            finite = finite.filter(finite.is_finite())
            distinct = finite.unique()
            if len(distinct) > FEW_VALUES:
                lo, hi = float(finite.quantile(0.001, "linear") or 0.0), float(finite.quantile(0.999, "linear") or 0.0)
                if not hi > lo:  # nearly constant: a few outliers around one value
                    lo, hi = float(finite.min()), float(finite.max())  # type: ignore[arg-type]
                return cls("numeric", dtype, tuple(float(e) for e in np.linspace(lo, hi, FINE_BINS + 1)))
            return cls("categorical", dtype, categories=tuple(sorted(float(v) for v in distinct)))
        counted = present.alias("v").value_counts(sort=False, name="n")
        top = counted.sort(["n", "v"], descending=[True, False]).head(TOP_CATEGORIES)["v"].to_list()
        return cls("categorical", dtype, categories=tuple(sorted(top, key=_sort_key)))

    def label(self, index: int) -> str:
        """What bin ``index`` holds, for people (``[12.5, 13.0)``, ``'FR'``, ``other``)."""
        if self.kind == "numeric":
            if index == 0:
                return f"< {self.edges[0]:.6g}"
            if index == len(self.edges):
                return f">= {self.edges[-1]:.6g}"
            return f"[{self.edges[index - 1]:.6g}, {self.edges[index]:.6g})"
        return "other" if index == len(self.categories) else repr(self.categories[index])

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "dtype": self.dtype, "edges": list(self.edges), "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Bins:
        return cls(data["kind"], str(data["dtype"]), tuple(data["edges"]),  # type: ignore[arg-type]
                   tuple(data["categories"]))  # type: ignore[arg-type]


def _sort_key(value: object) -> tuple[str, object]:
    return (type(value).__name__, value)
