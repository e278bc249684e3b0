"""Where monitoring keeps what it learns: baselines per feature version, and results as a time series.

A baseline is a profile (``monitor.profile``) of a feature's values in one training set, counted on
the bins the feature version's first baseline fixed (``monitor.bins``): so every later profile of
that version — a training set, an hour of served values — is comparable bin for bin, and drift is
exact and mergeable. A result point is one monitor's verdict on one window (metric, feature@version,
window, value, threshold, status), kept so history can be queried and plotted without raw data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Baseline:
    feature: str
    version: str
    origin: str  # what it was profiled from ("training set of 1,000,000 rows, spine times ...")
    recorded_at_us: int
    rows: int  # the training set's rows (the profile may count a seeded sample of them)
    profile: Mapping[str, Any]  # monitor.profile.Profile.to_dict()


@dataclass(frozen=True)
class Point:
    metric: str  # drift, null_rate, freshness, expectation:<name>, skew
    feature: str
    version: str
    window_start_us: int
    window_end_us: int
    value: float | None
    threshold: float | None
    status: str  # ok, drift/breach, insufficient_data
    detail: Mapping[str, Any] = field(default_factory=dict)


class MonitorStore(Protocol):
    def bins(self, feature: str, version: str) -> Mapping[str, Any] | None:
        """The bins fixed for a feature version (``monitor.bins.Bins.to_dict()``), or None."""
        ...

    def fix_bins(self, feature: str, version: str, bins: Mapping[str, Any]) -> Mapping[str, Any]:
        """Fix ``bins`` for the version unless some are fixed already; returns the fixed ones."""
        ...

    def add_baseline(self, baseline: Baseline) -> None: ...

    def baselines(self, feature: str, version: str | None = None) -> list[Baseline]:
        """The feature's baselines (of one version, or all), oldest first."""
        ...

    def record(self, points: Sequence[Point]) -> None:
        """Keep ``points``; a point of the same metric, feature version and window replaces the old one."""
        ...

    def points(self, *, metric: str | None = None, feature: str | None = None, since_us: int | None = None,
               until_us: int | None = None) -> list[Point]:
        """Result points whose window ends in [since, until), oldest first."""
        ...

    def latest(self) -> list[Point]:
        """The newest point of each (metric, feature, version)."""
        ...

    def close(self) -> None: ...
