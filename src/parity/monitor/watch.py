"""One feature version watched over time: its served values in buckets, against its baseline.

Each bucket (an hour by default) of served values is profiled on the version's fixed bins and
checked against the baseline for drift (``monitor.drift.drift``, size-aware, with an
``insufficient_data`` state) and for a null burst (``null_rate_shift``). The buckets' profiles
merge into the period's, which the report plots against the baseline. The verdicts become result
points (``ports.monitor_store.Point``) so history is kept without raw data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

import numpy as np
import polars as pl

from parity.define.expectations import Expectation
from parity.monitor.bins import Bins
from parity.monitor.drift import DriftResult, drift, null_rate_shift
from parity.monitor.profile import Profile, profile_buckets
from parity.ports.monitor_store import Point
from parity.semantics.expectations import Violation, check_values
from parity.semantics.time import from_micros


@dataclass
class FeatureWatch:
    feature: str
    version: str
    dtype: str
    bins: Bins | None  # None: no baseline recorded for this version
    baseline: Profile | None
    baseline_origin: str = ""
    windows: list[tuple[int, int]] = field(default_factory=list)  # [start, end) µs of each bucket
    profiles: list[Profile] = field(default_factory=list)
    drift: list[DriftResult] = field(default_factory=list)
    nulls: list[DriftResult] = field(default_factory=list)
    served: int = 0  # served values watched (masked ones are not)
    breaches: list[list[Violation]] = field(default_factory=list)  # per bucket, the expectations broken

    @property
    def period(self) -> Profile | None:
        """The whole period's profile (the buckets merged)."""
        return reduce(Profile.merge, self.profiles) if self.profiles else None

    @property
    def status(self) -> str:
        verdicts = {r.status for r in [*self.drift, *self.nulls]}
        if "drift" in verdicts:
            return "drift"
        if any(self.breaches):
            return "breach"
        if self.bins is None:
            return "no_baseline"
        return "ok" if "ok" in verdicts else "insufficient_data"

    def alarms(self) -> list[tuple[str, tuple[int, int], DriftResult]]:
        """(what, window, result) of every bucket that alarmed, in time order."""
        found = [("drift", w, r) for w, r in zip(self.windows, self.drift) if r.status == "drift"]
        found += [("null_rate", w, r) for w, r in zip(self.windows, self.nulls) if r.status == "drift"]
        return sorted(found, key=lambda a: (a[1], a[0]))

    def points(self) -> list[Point]:
        out = [Point("expectation", self.feature, self.version, start, end, float(sum(v.bad for v in broken)), None,
                     "breach" if broken else "ok", {"broken": [v.describe() for v in broken]})
               for (start, end), broken in zip(self.windows, self.breaches)]
        for (start, end), d, n in zip(self.windows, self.drift, self.nulls):
            out.append(Point("drift", self.feature, self.version, start, end, d.value, d.threshold, d.status,
                             {"method": d.method, "psi": d.psi, "n_current": d.n_current, "rule": d.rule,
                              "contributors": d.contributors}))
            out.append(Point("null_rate", self.feature, self.version, start, end, n.value, n.threshold, n.status,
                             {"rows": n.n_current, "rule": n.rule}))
        return out


def window_label(micros: int) -> str:
    """A bucket's start as people read it in a summary or the report (UTC, to the minute)."""
    return from_micros(micros).strftime("%Y-%m-%d %H:%M")


def watch_feature(feature: str, version: str, dtype: str, values: pl.Series, served_at_us: np.ndarray, *,
                  since_us: int, until_us: int, bucket_us: int, bins: Bins | None, baseline: Profile | None,
                  baseline_origin: str = "", expectations: tuple[Expectation, ...] = ()) -> FeatureWatch:
    """Bucket ``values`` (served at ``served_at_us``) over [since, until) and check each bucket:
    its expectations always, drift and nulls against the baseline when there is one."""
    watched = FeatureWatch(feature, version, dtype, bins, baseline, baseline_origin, served=len(values))
    n = max(1, -(-(until_us - since_us) // bucket_us))
    watched.windows = [(since_us + i * bucket_us, min(since_us + (i + 1) * bucket_us, until_us)) for i in range(n)]
    buckets = (np.asarray(served_at_us, dtype=np.int64) - since_us) // bucket_us
    if expectations:
        where = f"feature {feature} (served)"
        order = np.argsort(buckets, kind="stable")  # each bucket's values once, not a pass per bucket
        bounds = np.searchsorted(buckets[order], np.arange(n + 1))
        ordered = values.gather(pl.Series(order))
        watched.breaches = [check_values(ordered.slice(int(bounds[b]), int(bounds[b + 1] - bounds[b])), expectations,
                                         where) for b in range(n)]
    if bins is None or baseline is None:
        return watched
    watched.profiles = profile_buckets(values, buckets, n, bins)
    watched.drift = [drift(bins, baseline, p) for p in watched.profiles]
    watched.nulls = [null_rate_shift(baseline, p) for p in watched.profiles]
    return watched
