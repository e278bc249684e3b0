"""Baselines: every training set records a profile of each of its features, for drift to compare with.

The bins are fixed by a feature version's first baseline (``monitor.bins``) and kept in the
monitoring store (``ports.monitor_store``); each later training set of that version is counted on
the same bins, so every profile of the version compares bin for bin. A training set larger than
``SAMPLE_ROWS`` is profiled on a seeded sample of that many rows (the same table gives the same
baseline): a distribution is known to well under a percent from it, and a 1M-row training set of 10
features costs a tenth of a second more instead of a second. Masked columns (all null for the
principal) are not profiled, nor are features tagged ``pii`` (a profile keeps frequent values and
bin edges: the monitoring store would hold personal data), nor a column with no value to bin (all
null: the bins are fixed by the first training set that has values).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from parity.monitor.bins import Bins
from parity.monitor.profile import profile
from parity.ports.monitor_store import Baseline, MonitorStore

SAMPLE_ROWS = 100_000
# A training set smaller than this (a debugging set, a handful of rows checked by hand) says too
# little about a distribution to judge drift by: it is kept, but a larger one stays the reference.
MIN_REFERENCE_ROWS = 1_000


def reference_baseline(baselines: Sequence[Baseline]) -> Baseline | None:
    """The baseline drift is judged against: the newest of at least ``MIN_REFERENCE_ROWS`` rows,
    else the largest (``baselines`` oldest first, as the monitoring store lists them)."""
    for baseline in reversed(baselines):
        if baseline.rows >= MIN_REFERENCE_ROWS:
            return baseline
    return max(reversed(baselines), key=lambda b: b.rows, default=None)


def record_baselines(store: MonitorStore, table: pa.Table, features: Sequence[str], dtypes: Mapping[str, str],
                     versions: Mapping[str, str], origin: str) -> list[Baseline]:
    """Profile ``features`` (columns of ``table``) on their versions' fixed bins, and keep them."""
    frame = pl.from_arrow(table.select(list(features)))
    assert isinstance(frame, pl.DataFrame)
    rows = frame.height
    if rows > SAMPLE_ROWS:
        frame = frame.sample(n=SAMPLE_ROWS, seed=0)
    recorded = []
    now_us = time.time_ns() // 1000
    for ref in features:
        version = versions[ref]
        fixed: Mapping[str, Any] | None = store.bins(ref, version)
        if fixed is None:
            first = Bins.from_baseline(frame[ref], dtypes[ref])
            if first.kind != "untracked" and first.size <= 1:
                continue  # no value to bin (all null): bins fixed now would hold nothing forever
            fixed = store.fix_bins(ref, version, first.to_dict())
        bins = Bins.from_dict(dict(fixed))
        baseline = Baseline(ref, version, origin, now_us, rows, profile(frame[ref], bins).to_dict())
        store.add_baseline(baseline)
        recorded.append(baseline)
    return recorded
