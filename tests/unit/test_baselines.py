"""Baselines: every training set records a profile of its features, on bins fixed per feature version."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

import parity as pt
from parity.errors import ConfigError
from parity.monitor.bins import Bins
from parity.monitor.drift import drift
from parity.monitor.profile import Profile, profile
from parity.runtime import baselines as baseline_module
from parity.runtime.settings import load_settings

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
N = 2_000


def _write(tmp_path, shift: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(int(shift * 10))
    pl.DataFrame({"user_id": np.arange(N), "ts": [BASE] * N, "amount": rng.normal(50 + shift, 10, N),
                  "country": rng.choice(["DE", "FR", "NL"], N), "email": [f"u{i}@x.org" for i in range(N)]}
                 ).write_parquet(tmp_path / "u.parquet")


def _project(tmp_path, scale: float = 1.0, record: bool = True) -> pt.Project:  # type: ignore[no-untyped-def]
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                          features=[pt.Feature("amount", pt.Float64), pt.Feature("country", pt.String),
                                    pt.Feature("email", pt.String, tags=["pii"])])

    @pt.resolver(entity=user, outputs=pt.Feature("scaled", pt.Float64))
    def scaled(amount: float) -> float:
        return amount * scale

    masker = pt.Role("masker", grants=[pt.Grant(entity="user")], pii="mask")
    return pt.Project.from_definitions([user, view, scaled, masker], root=str(tmp_path),
                                       online_store_path=str(tmp_path / "o.db"), record_baselines=record,
                                       monitor_path=str(tmp_path / "monitor.db"))


SPINE = pl.DataFrame({"user_id": np.arange(N), "timestamp": [BASE + dt.timedelta(days=1)] * N})
FEATURES = ["user.amount", "user.country", "user.scaled"]


def test_each_training_set_records_a_baseline_on_bins_fixed_by_the_first(tmp_path):
    _write(tmp_path)
    with _project(tmp_path) as project:
        table = project.training_set(SPINE, FEATURES)
        first = {ref: project.baselines(ref) for ref in FEATURES}
        assert {ref: len(b) for ref, b in first.items()} == dict.fromkeys(FEATURES, 1)
        amount = Profile.from_dict(dict(first["user.amount"][0].profile))
        assert amount.rows == N and int(amount.counts.sum()) == N
        assert amount.minimum == min(table.column("user.amount").to_pylist())
        country = Profile.from_dict(dict(first["user.country"][0].profile))
        assert country.top == {c: table.column("user.country").to_pylist().count(c) for c in ("DE", "FR", "NL")}
        assert "training set of 2,000 rows" in first["user.amount"][0].origin
        fixed = project.monitor_store().bins("user.amount", first["user.amount"][0].version)
        _write(tmp_path, shift=30.0)  # the next training set's data has moved: the bins stay
        project.training_set(SPINE, FEATURES)
        later = project.baselines("user.amount")
        assert len(later) == 2 and project.monitor_store().bins("user.amount", later[1].version) == fixed
        bins = Bins.from_dict(dict(fixed or {}))
        old, new = (Profile.from_dict(dict(b.profile)) for b in later)
        assert drift(bins, old, new).status == "drift"  # comparable bin for bin
        assert drift(bins, old, old).status == "ok"


def test_a_new_version_gets_its_own_bins_and_masked_features_are_not_profiled(tmp_path):
    _write(tmp_path)
    with _project(tmp_path) as project:
        project.training_set(SPINE, ["user.scaled", "user.email"], principal=pt.Principal("svc", ["masker"]))
        assert len(project.baselines("user.scaled")) == 1
        assert project.baselines("user.email") == []  # masked: all null for this principal, not a baseline
        v1 = project.baselines("user.scaled")[0].version
    with _project(tmp_path, scale=1000.0) as changed:
        assert changed.baselines("user.scaled") == []  # another version: the old baseline is not its
        changed.training_set(SPINE, ["user.scaled"])
        v2 = changed.baselines("user.scaled")[0].version
        store = changed.monitor_store()
        assert v1 != v2 and store.bins("user.scaled", v1) != store.bins("user.scaled", v2)
        assert len(store.baselines("user.scaled")) == 2  # every version's, when asked for all


def test_a_large_training_set_is_profiled_on_a_seeded_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(baseline_module, "SAMPLE_ROWS", 500)
    _write(tmp_path)
    with _project(tmp_path) as project:
        project.training_set(SPINE, ["user.amount"])
        project.training_set(SPINE, ["user.amount"])
        a, b = project.baselines("user.amount")
    assert a.rows == b.rows == N  # the training set's size, said
    assert Profile.from_dict(dict(a.profile)).rows == 500 and a.profile == b.profile  # the same sample each time


def test_projects_from_definitions_record_nothing_unless_asked_and_settings_are_checked(tmp_path):
    _write(tmp_path)
    with _project(tmp_path, record=False) as project:
        project.training_set(SPINE, FEATURES)
    assert not (tmp_path / "monitor.db").exists()
    (tmp_path / "parity.toml").write_text('[project]\ndefinitions = "d.py"\n[monitor]\nbaselines = "yes"\n')
    with pytest.raises(ConfigError, match="monitor.baselines 'yes' must be true or false"):
        load_settings(str(tmp_path))
    (tmp_path / "parity.toml").write_text('[project]\ndefinitions = "d.py"\n[monitor]\nbaseline = true\n')
    with pytest.raises(ConfigError, match=r"\[monitor\] has no setting 'baseline'"):
        load_settings(str(tmp_path))
    (tmp_path / "parity.toml").write_text('[project]\ndefinitions = "d.py"\n')
    settings = load_settings(str(tmp_path))
    assert settings.record_baselines and settings.monitor_path == ".parity/monitor.db"


def test_served_values_drift_against_the_recorded_baseline(tmp_path):
    _write(tmp_path)
    with _project(tmp_path) as project:
        project.training_set(SPINE, ["user.amount"])
        (baseline,) = project.baselines("user.amount")
        bins = Bins.from_dict(dict(project.monitor_store().bins("user.amount", baseline.version) or {}))
    reference = Profile.from_dict(dict(baseline.profile))
    rng = np.random.default_rng(3)
    quiet = profile(pl.Series(rng.normal(50, 10, 5_000)), bins)
    moved = profile(pl.Series(rng.normal(53, 10, 5_000)), bins)  # +0.3 sigma
    assert drift(bins, reference, quiet).status == "ok"
    assert drift(bins, reference, moved).status == "drift"


def test_the_store_keeps_the_first_bins_fixed_and_points_as_a_time_series(tmp_path):
    from parity.connectors.monitor_sqlite import SQLiteMonitorStore
    from parity.ports.monitor_store import Point

    store = SQLiteMonitorStore(str(tmp_path / "m.db"))
    other = SQLiteMonitorStore(str(tmp_path / "m.db"))  # another process's writer, racing
    first = {"kind": "numeric", "dtype": "Float64", "edges": [0.0, 1.0], "categories": []}
    assert store.fix_bins("user.amount", "v1", first) == first
    assert other.fix_bins("user.amount", "v1", {**first, "edges": [5.0, 6.0]}) == first  # the first stays
    points = [Point("drift", "user.amount", "v1", h * 3600, (h + 1) * 3600, 0.01 * h, 0.1,
                    "drift" if h > 2 else "ok", {"method": "wasserstein"}) for h in range(5)]
    store.record(points[3:])
    other.record(points[:3])
    assert store.points(metric="drift", feature="user.amount") == points  # by window, whoever wrote it
    assert store.points(since_us=2 * 3600, until_us=4 * 3600) == points[1:3]
    assert store.points(metric="null_rate") == []
    store.close()
    other.close()
