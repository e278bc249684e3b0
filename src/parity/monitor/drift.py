"""Drift of one feature version between two profiles counted in the same bins — pure functions.

Which test (``method="auto"``), as Evidently chooses by the reference's size, since users know its
numbers:

============================== ======================= ====================================
reference (non-null values)     numeric (fine bins)      categorical
============================== ======================= ====================================
≤ 1000                          two-sample K-S, p        chi-square (2 categories: z-test), p
> 1000                          Wasserstein / σ_ref      Jensen-Shannon distance
============================== ======================= ====================================

PSI (on the baseline's deciles, or the categories) is computed with every check and can be the
method on request. Two rules keep the alarms honest, where the anchors are not:

- **insufficient data**: fewer than ``min_rows`` values in the current window (or the reference)
  is ``insufficient_data``, never drift (Evidently flagged an 8-row window, evidently#509);
- **a distance must beat sampling noise**: a distance alarms only above both its threshold (the
  effect that matters: 0.1 of the reference's σ, Evidently's default) and the noise floor — the
  largest distance between ``NOISE_DRAWS`` pairs of samples of the two windows' sizes drawn from the
  reference's own bins (seeded, so the same profiles always give the same answer). A fixed 0.1
  alarms on healthy windows of a few hundred rows; a p-value alarms on everything at large sizes
  ("with all data almost all features became drifted", evidently#50); the floor is what neither
  does.

Every result carries the bins that moved most (``contributors``): the alert says where.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from parity.monitor.bins import COARSE_BINS, Bins
from parity.monitor.distributions import chi2_sf, ks_two_sample_p, normal_sf
from parity.monitor.profile import Profile

METHODS = ("auto", "ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi")
P_VALUE_METHODS = ("ks", "chisquare", "z")
DEFAULT_THRESHOLDS = {"ks": 0.01, "chisquare": 0.01, "z": 0.01, "wasserstein": 0.1, "jensenshannon": 0.1,
                      "psi": 0.2}
SMALL_REFERENCE = 1000
MIN_ROWS = 100
NOISE_DRAWS = 400
_PSI_FLOOR = 1e-4  # the share an empty bin counts as in PSI (its log is otherwise infinite)


@dataclass(frozen=True)
class DriftResult:
    method: str
    status: str  # ok, drift, insufficient_data
    value: float | None  # the statistic: a p-value for ks/chisquare/z, else the distance
    threshold: float  # what value was compared with (the noise floor when that was higher)
    n_reference: int
    n_current: int
    psi: float | None = None
    rule: str = ""
    contributors: list[dict[str, object]] = field(default_factory=list)


def drift(bins: Bins, reference: Profile, current: Profile, *, method: str = "auto", threshold: float | None = None,
          min_rows: int = MIN_ROWS) -> DriftResult:
    if method not in METHODS:
        raise ValueError(f"drift method {method!r} is not one of {', '.join(METHODS)}")
    n_ref, n_cur = reference.present, current.present
    chosen = _auto(bins, n_ref) if method == "auto" else method
    limit = DEFAULT_THRESHOLDS[chosen] if threshold is None else threshold
    if bins.kind == "untracked":
        return DriftResult(chosen, "insufficient_data", None, limit, n_ref, n_cur, rule="not binned (a list feature)")
    if bins.size <= 1:  # a baseline without one usable value: nothing to compare with
        return DriftResult(chosen, "insufficient_data", None, limit, n_ref, n_cur,
                           rule="the baseline has no values to bin; record a new baseline")
    if min(n_ref, n_cur) < max(min_rows, 1):
        return DriftResult(chosen, "insufficient_data", None, limit, n_ref, n_cur,
                           rule=f"fewer than {min_rows} values in the {'current window' if n_cur < min_rows else 'reference'}")
    r, c = reference.counts.astype(np.float64), current.counts.astype(np.float64)
    coarse_r, coarse_c, labels = _coarse(bins, reference.counts, current.counts)
    psi = float(_psi(coarse_r / n_ref, coarse_c / n_cur))
    contributors = _contributors(coarse_r / n_ref, coarse_c / n_cur, labels)
    if chosen in P_VALUE_METHODS:
        p = _p_value(chosen, bins, r, c)
        status = "drift" if p < limit else "ok"
        return DriftResult(chosen, status, p, limit, n_ref, n_cur, psi, f"p < {limit:g}", contributors)
    value = float(_distance(chosen, bins, reference)(r, c))
    floor = _noise_floor(chosen, bins, reference, n_cur)
    bar = max(limit, floor)
    rule = f"{chosen} > max({limit:g}, noise floor {floor:.3g} at these sizes)"
    return DriftResult(chosen, "drift" if value > bar else "ok", value, bar, n_ref, n_cur, psi, rule, contributors)


def null_rate_shift(reference: Profile, current: Profile, *, min_effect: float = 0.02, alpha: float = 0.001,
                    min_rows: int = MIN_ROWS) -> DriftResult:
    """A rise in the share of nulls: significant (two-proportion z, one-sided) and at least
    ``min_effect`` (a null burst, not a wobble)."""
    if min(reference.rows, current.rows) < min_rows:
        return DriftResult("null_rate", "insufficient_data", None, min_effect, reference.rows, current.rows,
                           rule=f"fewer than {min_rows} rows")
    p_ref, p_cur = reference.nulls / reference.rows, current.nulls / current.rows
    pooled = (reference.nulls + current.nulls) / (reference.rows + current.rows)
    se = math.sqrt(pooled * (1 - pooled) * (1 / reference.rows + 1 / current.rows))
    p = normal_sf((p_cur - p_ref) / se) if se > 0 else (0.0 if p_cur > p_ref else 1.0)
    status = "drift" if p < alpha and p_cur - p_ref >= min_effect else "ok"
    return DriftResult("null_rate", status, p_cur, p_ref + min_effect, reference.rows, current.rows,
                       rule=f"null rate up by >= {min_effect:g} with p < {alpha:g}",
                       contributors=[{"bin": "null", "reference": p_ref, "current": p_cur}])


def _auto(bins: Bins, n_ref: int) -> str:
    if bins.kind == "numeric":
        return "ks" if n_ref <= SMALL_REFERENCE else "wasserstein"
    if n_ref <= SMALL_REFERENCE:
        return "z" if len(bins.categories) == 2 else "chisquare"
    return "jensenshannon"


def _p_value(method: str, bins: Bins, r: np.ndarray, c: np.ndarray) -> float:
    n, m = r.sum(), c.sum()
    if method == "ks":
        if bins.kind != "numeric":
            raise ValueError("drift method 'ks' applies to numeric features; use chisquare")
        statistic = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(c) / m)))
        return ks_two_sample_p(statistic, int(n), int(m))
    if method == "z":
        used = np.flatnonzero(r + c)
        if len(used) != 2:
            return 1.0 if len(used) < 2 else _p_value("chisquare", bins, r, c)
        x_r, x_c = r[used[0]], c[used[0]]
        pooled = (x_r + x_c) / (n + m)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
        return 2 * normal_sf(abs(x_r / n - x_c / m) / se) if se > 0 else 1.0
    # chi-square test of homogeneity; bins expected below 5 in either sample pooled into one
    total = r + c
    rare = (total * min(n, m) / (n + m)) < 5
    rows = [r[~rare], c[~rare]]
    if rare.any():
        rows = [np.append(rows[0], r[rare].sum()), np.append(rows[1], c[rare].sum())]
    table = np.vstack(rows)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return chi2_sf(statistic, table.shape[1] - 1)


Measure = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _distance(method: str, bins: Bins, reference: Profile) -> Measure:
    if method == "psi":
        coarse = _groups(bins, reference.counts)
        return lambda r, c: _psi(_group(r, coarse) / _total(r), _group(c, coarse) / _total(c))
    if method == "jensenshannon":
        return _jensen_shannon
    if bins.kind != "numeric":
        raise ValueError("drift method 'wasserstein' applies to numeric features; use jensenshannon")
    positions = _positions(bins, reference)
    sigma = reference.std or 0.0
    scale = sigma if sigma > 0 else (bins.edges[-1] - bins.edges[0]) or 1.0
    steps = np.diff(positions)

    def wasserstein(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        gap = np.abs(np.cumsum(r, axis=-1)[..., :-1] / _total(r) - np.cumsum(c, axis=-1)[..., :-1] / _total(c))
        return (gap * steps).sum(axis=-1) / scale

    return wasserstein


def _positions(bins: Bins, reference: Profile) -> np.ndarray:
    """Where each fine bin's mass sits: its middle; the outer bins' between the edge and the
    reference's extreme — the same for the window measured and the noise floor's samples, so one
    outlier in a window cannot stretch its distance."""
    edges = np.asarray(bins.edges)
    low = min(edges[0], reference.minimum if reference.minimum is not None else edges[0])
    high = max(edges[-1], reference.maximum if reference.maximum is not None else edges[-1])
    return np.concatenate([[(low + edges[0]) / 2], (edges[:-1] + edges[1:]) / 2, [(edges[-1] + high) / 2]])


# The distances take one pair of count vectors, or a matrix of them (one pair per row: the noise
# floor's samples), and give one value per pair.

def _total(counts: np.ndarray) -> np.ndarray:
    return counts.sum(axis=-1, keepdims=True)


def _jensen_shannon(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    p, q = r / _total(r), c / _total(c)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum(axis=-1)
    return np.sqrt(np.maximum(0.0, (kl_p + kl_q) / 2))


def _psi(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    p, q = np.maximum(p, _PSI_FLOOR), np.maximum(q, _PSI_FLOOR)
    return ((q - p) * np.log(q / p)).sum(axis=-1)


def _noise_floor(method: str, bins: Bins, reference: Profile, n_cur: int) -> float:
    """The largest distance between NOISE_DRAWS pairs of samples from the reference's bins, one of
    the reference's size and one of ``n_cur`` rounded down to a quarter octave (a smaller sample is
    noisier: the floor is never too low); cached, since a run checks many windows of like sizes."""
    n_grid = max(1, int(2 ** (math.floor(math.log2(n_cur) * 4) / 4)))
    digest = hashlib.blake2b(reference.counts.tobytes(), digest_size=16)
    digest.update(np.asarray(bins.edges, dtype=np.float64).tobytes())  # the positions Wasserstein uses
    digest.update(repr((method, reference.minimum, reference.maximum, reference.std, n_grid)).encode())
    key = digest.digest()
    floor = _FLOORS.get(key)
    if floor is None:
        measure = _distance(method, bins, reference)
        shares = reference.counts / reference.present
        rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
        refs = rng.multinomial(reference.present, shares, size=NOISE_DRAWS).astype(np.float64)
        curs = rng.multinomial(n_grid, shares, size=NOISE_DRAWS).astype(np.float64)
        floor = float(np.max(measure(refs, curs)))
        if len(_FLOORS) >= 4096:
            _FLOORS.pop(next(iter(_FLOORS)))
        _FLOORS[key] = floor
    return floor


_FLOORS: dict[bytes, float] = {}


def _groups(bins: Bins, reference_counts: np.ndarray) -> np.ndarray:
    """For numeric bins, which decile of the reference each fine bin falls in; categories are their own."""
    if bins.kind != "numeric":
        return np.arange(bins.size)
    cumulative = np.cumsum(reference_counts) / max(int(reference_counts.sum()), 1)
    before = np.concatenate([[0.0], cumulative[:-1]])
    deciles = np.minimum((before * COARSE_BINS).astype(np.int64), COARSE_BINS - 1)
    return np.unique(deciles, return_inverse=True)[1].astype(np.int64)  # dense: a spike spans deciles


def _group(counts: np.ndarray, groups: np.ndarray) -> np.ndarray:
    size = int(groups.max()) + 1
    if counts.ndim == 1:
        return np.bincount(groups, weights=counts, minlength=size)
    one_hot = np.zeros((groups.size, size))
    one_hot[np.arange(groups.size), groups] = 1.0
    return counts @ one_hot


def _coarse(bins: Bins, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    groups = _groups(bins, r)
    if bins.kind != "numeric":
        return r.astype(np.float64), c.astype(np.float64), [bins.label(i) for i in range(bins.size)]
    labels = []
    for g in range(int(groups.max()) + 1):
        members = np.flatnonzero(groups == g)
        first, last = int(members[0]), int(members[-1])
        low = "-inf" if first == 0 else f"{bins.edges[first - 1]:.6g}"
        high = "inf" if last == len(bins.edges) else f"{bins.edges[last]:.6g}"
        labels.append(f"[{low}, {high})")
    return _group(r, groups), _group(c, groups), labels


def _contributors(p: np.ndarray, q: np.ndarray, labels: list[str], top: int = 3) -> list[dict[str, object]]:
    order = np.argsort(-np.abs(q - p), kind="stable")[:top]
    return [{"bin": labels[i], "reference": round(float(p[i]), 6), "current": round(float(q[i]), 6)}
            for i in order if q[i] != p[i]]
