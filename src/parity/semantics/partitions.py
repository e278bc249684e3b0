"""Key partitions: which of ``count`` partitions an entity key belongs to — the one rule that the
partitioned offline engine, its scans and its probes share, so a key's source rows and the spine
rows that ask for it always meet in the same partition.

A key is hashed in its canonical storage form (``semantics.keys``: -0.0 as 0.0, one NaN; times as
µs, dates as days), so two spellings of one key can never land apart. The hash is Polars' with a
fixed seed: stable within a process, which is all a partitioned run needs (both sides are hashed by
the same run). A key with a null part (a relationship with no parent) is hashed like any other: it
matches nothing in whichever partition it lands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from parity.define.dtypes import DType
from parity.errors import DataError
from parity.semantics import keys as key_rule
from parity.semantics.values import storage_polars_type

_SEED = 0x5EED


@dataclass(frozen=True)
class Partition:
    """One of ``count`` key partitions of a scan: the rows whose key hashes to ``index``."""

    count: int
    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count}")


def checked_count(count: object) -> int:
    """A number of key partitions, refused (one line) unless a whole number of 1 or more."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise DataError(f"partitions={count!r}: give a whole number of 1 or more")
    return count


def partition_of(columns: Mapping[str, DType], count: int) -> pl.Expr:
    """Each row's partition (UInt64 in [0, count)) from its key ``columns`` (name → key dtype)."""
    parts = [key_rule.canonical_expr(dtype, pl.col(name).cast(storage_polars_type(dtype))).alias(name)
             for name, dtype in columns.items()]
    hashed = parts[0].hash(_SEED) if len(parts) == 1 else pl.struct(parts).hash(_SEED)
    return hashed % count


def member_of(columns: Mapping[str, DType], partition: Partition) -> pl.Expr:
    """Whether a row's key belongs to ``partition``."""
    return partition_of(columns, partition.count) == partition.index


_SAMPLES: dict[str, list[object]] = {
    "Int64": [0, 1, -1, 2**40, -(2**62)], "Float64": [0.0, 1.5, -2.25, 1e300, float("nan")],
    "String": ["", "a", "é", "parity", "0"], "Bool": [True, False, True, False, True],
    "Timestamp": [0, 1, -1, 10**15, 1_234_567], "Date": [0, 1, -1, 19_000, 365],
}


def fingerprint(columns: Mapping[str, DType], count: int) -> list[int]:
    """The partitions of five fixed keys of this shape: the same in every process that hashes
    keys as this one does (the hash is stable within a Polars version; processes of one run on
    machines with another version would split a key's rows from its probes, so they compare this)."""
    frame = pl.DataFrame({name: pl.Series(_SAMPLES.get(d.name, _SAMPLES["String"]), dtype=storage_polars_type(d),
                                          strict=False) for name, d in columns.items()})
    return [int(p) for p in frame.select(partition_of(columns, count)).to_series().to_list()]
