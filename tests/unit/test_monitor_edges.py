"""parity monitor at the edges: a log across versions of a feature (its dtype changed), values its
dtype cannot read, runs over overlapping ranges, baselines that could not bin, pii, hostile labels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pytest

import parity as pt
from parity.cli.main import main
from parity.connectors.feature_log_parquet import SCHEMA
from parity.errors import DataError
from parity.registry.versions import Versions
from parity.runtime.monitoring import HOUR_US, watch_log

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
START_US = int(dt.datetime(2024, 2, 1, tzinfo=dt.UTC).timestamp() * 1e6)
N = 300


def _project(tmp_path, features, frame) -> pt.Project:  # type: ignore[no-untyped-def]
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    frame.write_parquet(tmp_path / "u.parquet")
    view = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                          features=features)
    return pt.Project.from_definitions([user, view], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"),
                                       record_baselines=True, monitor_path=str(tmp_path / "monitor.db"))


def _spine(days: int = 1) -> pl.DataFrame:
    return pl.DataFrame({"user_id": np.arange(N), "timestamp": [BASE + dt.timedelta(days=days)] * N})


def _versions(project: pt.Project, refs: list[str]) -> dict[str, str]:
    return {r: Versions(project.catalog).version(project.catalog.feature_at(project.catalog.parse(r))) for r in refs}


def _log(rows: list[tuple[int, dict, dict | None, dict]]) -> pa.Table:  # type: ignore[type-arg]
    columns: dict[str, list[object]] = {f.name: [] for f in SCHEMA}
    for i, (at, values, statuses, versions) in enumerate(rows):
        for name, value in (("request_id", str(i)), ("request_time_us", at), ("served_at_us", at), ("principal", "p"),
                            ("row", 0), ("entity", '{"user_id":1}'), ("values", orjson.dumps(values).decode()),
                            ("statuses", None if statuses is None else orjson.dumps(statuses).decode()),
                            ("versions", orjson.dumps(versions).decode())):
            columns[name].append(value)
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in SCHEMA}, schema=SCHEMA)


def test_a_log_across_versions_reads_each_version_by_its_own_dtype(tmp_path):
    frame = pl.DataFrame({"user_id": np.arange(N), "ts": [BASE] * N, "score": np.arange(N) % 100})
    with _project(tmp_path, [pt.Feature("score", pt.Int64)], frame) as project:
        project.training_set(_spine(), ["user.score"])
        v1 = _versions(project, ["user.score"])
    with _project(tmp_path, [pt.Feature("score", pt.String)], frame.with_columns(pl.col("score").cast(pl.String))) \
            as project:
        project.training_set(_spine(), ["user.score"])
        v2 = _versions(project, ["user.score"])
        rows = [(START_US + i, {"user.score": i % 100}, None, v1) for i in range(200)]
        rows += [(START_US + 10**6 + i, {"user.score": str(i % 100)}, None, v2) for i in range(200)]
        rows += [(START_US + 2 * 10**6, {"user.score": 5}, None, {"user.score": "an-unknown-version"})]
        run = watch_log(project, _log(rows), record=False)
    assert sorted((w.version, w.dtype, w.served) for w in run.watches) == sorted(
        [(v1["user.score"], "Int64", 200), (v2["user.score"], "String", 200)])
    assert run.undefined == {"user.score": 1}  # an old version with no baseline: its dtype is not known


def test_values_the_dtype_cannot_read_are_counted_not_fatal(tmp_path):
    frame = pl.DataFrame({"user_id": np.arange(N), "ts": [BASE] * N, "n": np.arange(N), "at": [BASE] * N})
    features = [pt.Feature("n", pt.Int64), pt.Feature("at", pt.Timestamp)]
    with _project(tmp_path, features, frame) as project:
        project.training_set(_spine(), ["user.n", "user.at"])
        v = _versions(project, ["user.n", "user.at"])
        bad = [{"user.n": 1.5, "user.at": "not a time"}, {"user.n": "7", "user.at": 12}, {"user.n": True, "user.at": None}]
        rows = [(START_US + i, bad[i % 3] if i < 3 else {"user.n": i, "user.at": "2024-01-01T00:00:00+00:00"}, None, v)
                for i in range(200)]
        run = watch_log(project, _log(rows), record=False)
    assert run.undecodable == {"user.n": 3, "user.at": 2}  # a null is a null, not unreadable
    assert {w.feature: w.served for w in run.watches} == {"user.n": 197, "user.at": 198}
    assert "3 logged values not watched: not readable as the feature's dtype" in "\n".join(run.lines())


def test_runs_over_overlapping_ranges_replace_each_others_points(tmp_path):
    frame = pl.DataFrame({"user_id": np.arange(N), "ts": [BASE] * N, "x": np.arange(N) * 1.0})
    with _project(tmp_path, [pt.Feature("x", pt.Float64)], frame) as project:
        project.training_set(_spine(), ["user.x"])
        v = _versions(project, ["user.x"])
        rows = [(START_US + i * (HOUR_US // 100), {"user.x": float(i % 300)}, None, v) for i in range(300)]
        log = _log(rows)
        watch_log(project, log, until_us=START_US + HOUR_US * 3 // 2)
        watch_log(project, log, since_us=START_US + HOUR_US // 4)
        watch_log(project, log)
        windows = [(p.window_start_us - START_US) // HOUR_US for p in
                   project.monitor_store().points(metric="drift", feature="user.x")]
        assert windows == [0, 1, 2]  # buckets on the hour whatever the range, each once
        with pytest.raises(DataError, match="--until must be after --since"):
            watch_log(project, log, since_us=START_US + HOUR_US, until_us=START_US)


def test_no_bins_are_fixed_from_a_column_without_values_and_pii_is_never_profiled(tmp_path):
    frame = pl.DataFrame({"user_id": np.arange(N), "ts": [BASE + dt.timedelta(days=5)] * N, "x": np.arange(N) * 1.0,
                          "email": [f"u{i}@corp.example" for i in range(N)]})
    features = [pt.Feature("x", pt.Float64), pt.Feature("email", pt.String, tags=["pii"])]
    with _project(tmp_path, features, frame) as project:
        project.training_set(_spine(days=1), ["user.x", "user.email"])  # before any data: all null
        assert project.baselines("user.x") == []
        project.training_set(_spine(days=6), ["user.x", "user.email"])
        (baseline,) = project.baselines("user.x")
        bins = project.monitor_store().bins("user.x", baseline.version)
        assert bins is not None and bins["kind"] == "numeric"  # fixed by the first training set with values
        assert project.baselines("user.email") == []
    assert b"corp.example" not in (tmp_path / "monitor.db").read_bytes()


def test_labels_that_look_like_tex_or_html_are_drawn_and_escaped_as_text(tmp_path):
    pytest.importorskip("matplotlib", reason='the report needs parity[report]: pip install -e ".[report]"')
    from parity.monitor.report import render

    labels = ["$x_$", "<script>alert(1)</script>", "a&b'\""]
    frame = pl.DataFrame({"user_id": np.arange(N), "ts": [BASE] * N, "c": [labels[i % 3] for i in range(N)]})
    with _project(tmp_path, [pt.Feature("c", pt.String)], frame) as project:
        project.training_set(_spine(), ["user.c"])
        v = _versions(project, ["user.c"])
        run = watch_log(project, _log([(START_US + i, {"user.c": labels[0]}, None, v) for i in range(300)]),
                        record=False)
    report = render(run.watches, title="<t>", generated_at=BASE)
    assert "<script>" not in report and "&lt;script&gt;" in report and "<h1>&lt;t&gt;</h1>" in report
    assert report.count("<img class='plot'") == 3


def test_a_backwards_range_on_the_cli_is_exit_2(tmp_path, capsys):
    (tmp_path / "parity.toml").write_text('[project]\ndefinitions = "defs.py"\n')
    (tmp_path / "defs.py").write_text("import parity as pt\nuser = pt.Entity('user', keys={'user_id': pt.Int64})\n")
    assert main(["-C", str(tmp_path), "monitor", "--since", "2024-02-02T00:00:00Z", "--until",
                 "2024-02-01T00:00:00Z"]) == 2
    assert "--until must be after --since" in capsys.readouterr().err
