"""Profiles on fixed bins and drift between them (monitor.bins, monitor.profile, monitor.drift)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.monitor.bins import FINE_BINS, Bins
from parity.monitor.distributions import chi2_sf, kolmogorov_sf, normal_sf
from parity.monitor.drift import drift, null_rate_shift
from parity.monitor.profile import Profile, profile, profile_buckets


def test_tail_probabilities_match_published_tables() -> None:
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(18.307038053275146, 10) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(0.1025866, 2) == pytest.approx(0.95, rel=1e-6)  # the series branch
    assert kolmogorov_sf(1.3580986393225505) == pytest.approx(0.05, rel=1e-6)
    assert kolmogorov_sf(1.6276236115189502) == pytest.approx(0.01, rel=1e-6)
    assert normal_sf(1.959963984540054) == pytest.approx(0.025, rel=1e-12)


def _numbers(seed: int, n: int, mean: float = 10.0, sd: float = 2.0) -> pl.Series:
    return pl.Series(np.random.default_rng(seed).normal(mean, sd, n))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64),
                          st.sampled_from([0.0, -0.0, 1.5, 1.5, 2.0])), min_size=1, max_size=200),
       st.lists(st.integers(0, 4), min_size=1, max_size=200), st.randoms(use_true_random=False))
def test_profiles_of_buckets_merge_into_the_profile_of_the_whole_in_any_order(values, assignment, rnd) -> None:  # type: ignore[no-untyped-def]
    series = pl.Series(values, dtype=pl.Float64)
    bins = Bins.from_baseline(series, "Float64")
    buckets = np.asarray([assignment[i % len(assignment)] for i in range(len(values))])
    parts = profile_buckets(series, buckets, 5, bins)
    rnd.shuffle(parts)
    merged = Profile()
    for part in parts:
        merged = merged.merge(part)
    whole = profile(series, bins)
    assert (merged.rows, merged.nulls, merged.nan, merged.minimum, merged.maximum, merged.finite) == \
        (whole.rows, whole.nulls, whole.nan, whole.minimum, whole.maximum, whole.finite)
    assert merged.counts.tolist() == whole.counts.tolist()  # exact: drift reads nothing else
    assert merged.present == sum(1 for v in values if v is not None and not math.isnan(v))
    if whole.finite:
        assert merged.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-9 * max(1.0, abs(whole.maximum or 0)))


def test_categorical_profiles_merge_their_distinct_counts_exactly_and_keep_the_top_values() -> None:
    rng = np.random.default_rng(3)
    values = pl.Series([f"m{int(i)}" for i in rng.zipf(1.5, 30_000) % 5000] + [None] * 50)
    bins = Bins.from_baseline(values, "String")
    buckets = rng.integers(0, 7, len(values))
    parts = profile_buckets(values, buckets, 7, bins)
    forward, backward = Profile(), Profile()
    for part in parts:
        forward = forward.merge(part)
    for part in reversed(parts):
        backward = backward.merge(part)
    whole = profile(values, bins)
    assert forward.registers is not None and backward.registers is not None and whole.registers is not None
    assert forward.registers.tolist() == backward.registers.tolist() == whole.registers.tolist()
    true_distinct = values.drop_nulls().n_unique()
    assert whole.distinct() == forward.distinct() and abs(whole.distinct() - true_distinct) < 0.05 * true_distinct  # type: ignore[operator]
    assert list(whole.top)[:3] == ["m1", "m2", "m3"] and whole.nulls == 50
    assert Profile.from_dict(whole.to_dict()).to_dict() == whole.to_dict()


def test_quantiles_read_from_the_fine_bins_are_within_one_bin_of_the_exact_ones() -> None:
    values = _numbers(1, 200_000)
    bins = Bins.from_baseline(values, "Float64")
    p = profile(values, bins)
    width = (bins.edges[-1] - bins.edges[0]) / FINE_BINS
    for q in (0.01, 0.25, 0.5, 0.9, 0.99):
        assert abs(p.quantile(bins, q) - values.quantile(q)) <= width  # type: ignore[operator]
    assert p.quantile(bins, 0.0) == values.min() and p.quantile(bins, 1.0) == values.max()


def test_a_planted_shift_is_found_with_the_bins_it_moved() -> None:
    reference = _numbers(1, 20_000)
    bins = Bins.from_baseline(reference, "Float64")
    base = profile(reference, bins)
    shifted = drift(bins, base, profile(_numbers(2, 3_000, mean=10.6), bins))  # +0.3 σ
    assert shifted.method == "wasserstein" and shifted.status == "drift" and shifted.value > 0.25  # type: ignore[operator]
    assert shifted.contributors[0]["bin"].endswith("inf)")  # the top decile gained most  # type: ignore[union-attr]
    assert shifted.contributors[0]["current"] > shifted.contributors[0]["reference"]  # type: ignore[operator]
    assert drift(bins, base, profile(_numbers(3, 3_000), bins)).status == "ok"
    one_outlier = pl.concat([_numbers(4, 3_000), pl.Series([1e6])])
    assert drift(bins, base, profile(one_outlier, bins)).status == "ok"  # one value does not stretch the distance
    assert drift(bins, base, profile(_numbers(2, 3_000, mean=11.0), bins), method="psi").status == "drift"
    assert drift(bins, base, profile(_numbers(3, 3_000), bins), method="psi").status == "ok"


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_healthy_windows_of_every_size_raise_no_alarm(kind: str) -> None:
    rng = np.random.default_rng(7)
    letters = list("abcdefghij")
    shares = np.linspace(1, 3, len(letters)) / np.linspace(1, 3, len(letters)).sum()

    def sample(n: int) -> pl.Series:
        if kind == "categorical":
            return pl.Series(rng.choice(letters, n, p=shares).tolist())
        return pl.Series(rng.lognormal(3, 0.5, n))

    reference = sample(50_000)  # a training set's worth
    bins = Bins.from_baseline(reference, "String" if kind == "categorical" else "Float64")
    base = profile(reference, bins)
    sizes = np.exp(rng.uniform(np.log(100), np.log(20_000), 150))  # quiet hours and busy ones
    results = [drift(bins, base, profile(sample(int(n)), bins)) for n in sizes]
    assert {r.method for r in results} == {"numeric": {"wasserstein"}, "categorical": {"jensenshannon"}}[kind]
    assert [r for r in results if r.status != "ok"] == []


def test_small_references_alarm_on_healthy_data_at_most_at_their_p_value_rate() -> None:
    # A p-value test (a reference of ≤ 1000 values) alarms on a share alpha = 0.01 of healthy pairs
    # by construction — 150 independent pairs give more than 5 with probability 0.0005 — and finds
    # every window whose values grew by a third.
    rng = np.random.default_rng(11)
    alarms = found = 0
    for n in rng.integers(100, 20_000, 150):
        reference = pl.Series(rng.lognormal(3, 0.5, 800))
        bins = Bins.from_baseline(reference, "Float64")
        base = profile(reference, bins)
        result = drift(bins, base, profile(pl.Series(rng.lognormal(3, 0.5, int(n))), bins))
        assert result.method == "ks"
        alarms += result.status == "drift"
        found += drift(bins, base, profile(pl.Series(rng.lognormal(3, 0.5, int(n)) * 1.33), bins)).status == "drift"
    assert alarms <= 5 and found == 150


def test_small_windows_are_insufficient_data_not_drift() -> None:
    reference = _numbers(1, 5_000)
    bins = Bins.from_baseline(reference, "Float64")
    tiny = drift(bins, profile(reference, bins), profile(_numbers(2, 8, mean=30.0), bins))  # evidently#509
    assert tiny.status == "insufficient_data" and "fewer than 100" in tiny.rule


def test_small_references_use_tests_with_p_values() -> None:
    reference = pl.Series(["a"] * 300 + ["b"] * 300)
    bins = Bins.from_baseline(reference, "String")
    base = profile(reference, bins)
    moved = drift(bins, base, profile(pl.Series(["a"] * 400 + ["b"] * 200), bins))
    assert moved.method == "z" and moved.status == "drift" and moved.value < 1e-6  # type: ignore[operator]
    three = pl.Series(["a"] * 200 + ["b"] * 200 + ["c"] * 200)
    b3 = Bins.from_baseline(three, "String")
    assert drift(b3, profile(three, b3), profile(three, b3)).method == "chisquare"
    assert drift(b3, profile(three, b3), profile(pl.Series(["c"] * 600), b3)).status == "drift"


def test_a_null_burst_is_found_and_a_steady_null_rate_is_not() -> None:
    rng = np.random.default_rng(5)

    def with_nulls(n: int, rate: float) -> pl.Series:
        values = rng.normal(0, 1, n).tolist()
        return pl.Series([None if rng.random() < rate else v for v in values], dtype=pl.Float64)

    reference = with_nulls(20_000, 0.01)
    bins = Bins.from_baseline(reference, "Float64")
    base = profile(reference, bins)
    assert null_rate_shift(base, profile(with_nulls(2_000, 0.10), bins)).status == "drift"
    assert all(null_rate_shift(base, profile(with_nulls(2_000, 0.01), bins)).status == "ok" for _ in range(50))


def test_bins_are_fixed_by_the_baseline_and_round_trip() -> None:
    ints = pl.Series([1, 2, 2, 3, None])
    few = Bins.from_baseline(ints, "Int64")
    assert few.kind == "categorical" and few.categories == (1.0, 2.0, 3.0)  # ≤ 5 values: by value
    assert profile(pl.Series([2, 2, 9]), few).counts.tolist() == [0, 2, 0, 1]  # 9 is "other"
    assert Bins.from_baseline(pl.Series([[1], [2]]), "List(Int64)").kind == "untracked"
    numeric = Bins.from_baseline(_numbers(1, 1000), "Float64")
    assert Bins.from_dict(numeric.to_dict()) == numeric and numeric.size == FINE_BINS + 2
    outside = profile(pl.Series([-1e9, 1e9, math.inf, math.nan]), numeric)
    assert outside.counts[0] == 1 and outside.counts[-1] == 2 and outside.nan == 1


def test_spikes_constant_baselines_few_valued_times_and_infinities_are_handled() -> None:
    import datetime as dt

    spiky = pl.Series(np.concatenate([np.zeros(3000), np.random.default_rng(0).normal(5, 1, 2000)]))
    bins = Bins.from_baseline(spiky, "Float64")
    assert drift(bins, profile(spiky, bins), profile(spiky, bins)).status == "ok"  # a bin over a decile
    empty = Bins.from_baseline(pl.Series([math.nan, math.nan]), "Float64")
    assert drift(empty, profile(pl.Series([1.0] * 200), empty), profile(pl.Series([9.0] * 200), empty)).status \
        == "insufficient_data"
    days = pl.Series([dt.date(2024, 1, i) for i in range(1, 4)] * 50)
    day_bins = Bins.from_baseline(days, "Date")
    assert day_bins.kind == "categorical" and profile(days, day_bins).distinct() == 3
    numeric = Bins.from_baseline(_numbers(1, 1000), "Float64")
    with_inf = profile(pl.Series([5.0, math.inf, math.inf, math.inf]), numeric)
    assert all(with_inf.quantile(numeric, q) == 5.0 for q in (0.1, 0.5, 0.9))
    assert drift(numeric, profile(_numbers(1, 1000), numeric), profile(pl.Series([], dtype=pl.Float64), numeric),
                 min_rows=0).status == "insufficient_data"
