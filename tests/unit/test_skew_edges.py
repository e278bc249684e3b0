"""parity skew at the edges: keys of every dtype, requests across two root entities, logged rows the
definitions no longer fit, windows through a relationship with no parent."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest
from tests.support import at

import parity as pt

KEYS = {
    "Float64": (pt.Float64, [-0.0, math.nan, 1.5], [0.0, math.nan, 1.5]),  # -0.0 and 0.0 are one key
    "Timestamp": (pt.Timestamp, [at(1, 1), at(1, 2), at(1, 3)], None),
    "Date": (pt.Date, [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)], None),
    "Bool": (pt.Bool, [True, False], None),
    "String": (pt.String, ["é", "日本", "a"], None),
}


def _project(root, defs, rate: float = 0.0) -> pt.Project:  # type: ignore[no-untyped-def]
    return pt.Project.from_definitions(defs, root=str(root), online_store_path=str(root / "o.db"),
                                       feature_log_sample_rate=rate)


@pytest.mark.parametrize("name", list(KEYS))
def test_keys_of_every_dtype_find_their_source_rows(tmp_path, name):
    dtype, source_keys, request_keys = KEYS[name]
    entity = pt.Entity("e", keys={"k": dtype})
    view = pt.FeatureView("v", entity=entity, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                          features=[pt.Feature("x", pt.Float64)])
    n = len(source_keys)
    pl.DataFrame({"k": source_keys, "ts": [at(1)] * n, "x": [float(i) for i in range(n)]}).write_parquet(
        tmp_path / "u.parquet")
    with _project(tmp_path, [entity, view]) as project:
        project.materialize(until=at(2), incremental=False)
    pl.DataFrame({"k": source_keys * 2, "ts": [at(1)] * n + [at(3)] * n,
                  "x": [float(i) for i in range(n)] + [100.0 + i for i in range(n)]}).write_parquet(tmp_path / "u.parquet")
    with _project(tmp_path, [entity, view], 1.0) as project:
        project.query({"k": request_keys or source_keys}, ["e.x"], now=at(4))
    with _project(tmp_path, [entity, view]) as project:
        report = project.skew(sample=None)
    assert dict(report.features["e.x"].causes) == {"store_behind": n}, "\n".join(report.lines())


def _two_roots() -> list[object]:
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    merchant = pt.Entity("merchant", keys={"merchant_id": pt.String})
    users = pt.FeatureView("uv", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                           features=[pt.Feature("score", pt.Float64)])
    merchants = pt.FeatureView("mv", entity=merchant, source=pt.ParquetSource("m", path="m.parquet", event_time="ts"),
                               features=[pt.Feature("risk", pt.Float64)])
    return [user, merchant, users, merchants]


def test_a_request_across_two_root_entities_finds_each_roots_rows(tmp_path):
    pl.DataFrame({"user_id": [1, 2], "ts": [at(1)] * 2, "score": [1.0, 2.0]}).write_parquet(tmp_path / "u.parquet")
    pl.DataFrame({"merchant_id": ["é", "b"], "ts": [at(1)] * 2, "risk": [0.1, 0.2]}).write_parquet(tmp_path / "m.parquet")
    with _project(tmp_path, _two_roots()) as project:
        project.materialize(until=at(2), incremental=False)
    pl.DataFrame({"user_id": [1, 2, 1], "ts": [at(1), at(1), at(3)], "score": [1.0, 2.0, 9.0]}).write_parquet(
        tmp_path / "u.parquet")  # a newer user row, never materialized
    pl.DataFrame({"merchant_id": ["é", "b"], "ts": [at(1)] * 2, "risk": [0.1, 0.25]}).write_parquet(
        tmp_path / "m.parquet")  # merchant b rewritten in place
    with _project(tmp_path, _two_roots(), 1.0) as project:
        project.query({"user_id": [1, 2], "merchant_id": ["é", "b"]}, ["user.score", "merchant.risk"], now=at(4))
    with _project(tmp_path, _two_roots()) as project:
        report = project.skew(sample=None)
    assert dict(report.features["user.score"].causes) == {"store_behind": 1}
    assert dict(report.features["merchant.risk"].causes) == {"source_rewritten": 1}


def test_logged_rows_the_definitions_no_longer_fit_are_counted_not_fatal(tmp_path):
    pl.DataFrame({"user_id": [1, 2], "region": ["a", "b"], "ts": [at(1)] * 2, "x": [1.0, 2.0]}).write_parquet(
        tmp_path / "u.parquet")

    def defs(keys: dict[str, pt.DType]) -> list[object]:
        user = pt.Entity("user", keys=keys)
        return [user, pt.FeatureView("v", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                                     features=[pt.Feature("x", pt.Float64)])]

    with _project(tmp_path, defs({"user_id": pt.Int64}), 1.0) as project:
        project.materialize(until=at(2), incremental=False)
        project.query({"user_id": [1, 2]}, ["user.x"], now=at(3))
    for keys in ({"user_id": pt.Int64, "region": pt.String}, {"user_id": pt.String}):  # a key added; retyped
        with _project(tmp_path, defs(keys)) as project:
            report = project.skew(sample=None)
        assert (report.rows, report.unreplayable, report.mismatches) == (2, 2, 0)
        assert "2 logged rows not replayed: their entity keys no longer fit" in "\n".join(report.lines())


def test_a_window_through_a_relationship_with_no_parent_is_missing_on_both_paths(tmp_path):
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    order = pt.Entity("order", keys={"order_id": pt.String}, relationships={"user": pt.HasOne(user, via="user_id")})
    windows = pt.WindowView("w", entity=user, source=pt.ParquetSource("ev", path="ev.parquet", event_time="ts"),
                            columns={"amount": pt.Float64}, windows=["1d", "lifetime"],
                            features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("s", pt.agg.sum("amount"))])
    orders = pt.FeatureView("ov", entity=order, source=pt.ParquetSource("o", path="o.parquet", event_time="ts"),
                            features=[pt.Feature("user_id", pt.Int64)])
    defs = [user, order, windows, orders]
    pl.DataFrame({"user_id": [1, 1, 2], "ts": [at(1), at(1, 12), at(1, 3)], "amount": [1.0, -0.0, 2.5]}).write_parquet(
        tmp_path / "ev.parquet")
    pl.DataFrame({"order_id": ["a", "b"], "ts": [at(1)] * 2, "user_id": [1, None]}).write_parquet(tmp_path / "o.parquet")
    with _project(tmp_path, defs) as project:
        project.materialize(until=at(2), incremental=False)
    with _project(tmp_path, defs, 1.0) as project:
        project.query({"order_id": ["a", "b", "zz"]}, ["order.user.n[1d]", "order.user.s[lifetime]"], now=at(2))
    with _project(tmp_path, defs) as project:
        report = project.skew(sample=None)
        table = project.training_set(pl.DataFrame({"order_id": ["a", "b", "zz"], "timestamp": [at(2)] * 3}),
                                     ["order.user.n[1d]"], with_status=True)
    assert report.mismatches == 0, "\n".join(report.lines())
    assert table.column("order.user.n[1d]:status").to_pylist() == ["present", "missing", "missing"]


def test_skew_through_a_relationship_is_explained_by_the_parent_and_the_related_rows(tmp_path):
    """Features of an order's user: the related rows are searched under the user the relationship
    led to at the request time, and a skew in the relationship's own key is found in its view."""
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    order = pt.Entity("order", keys={"order_id": pt.String}, relationships={"user": pt.HasOne(user, via="user_id")})
    profile = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("p", path="p.parquet", event_time="ts"),
                             features=[pt.Feature("tier", pt.String)])
    limits = pt.FeatureView("limits", entity=user,
                            source=pt.ParquetSource("l", path="l.parquet", event_time="ts", created_time="created",
                                                    as_of="event_time"),
                            features=[pt.Feature("limit", pt.Int64)])
    orders = pt.FeatureView("ov", entity=order,
                            source=pt.ParquetSource("o", path="o.parquet", event_time="ts", created_time="created",
                                                    as_of="event_time"),
                            features=[pt.Feature("user_id", pt.Int64)])
    defs = [user, order, profile, limits, orders]
    users = [1, 2, 3, 4]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    pl.DataFrame({"user_id": users, "ts": [at(1)] * 4, "tier": [f"t{u}" for u in users]}).write_parquet(
        tmp_path / "p.parquet")
    limit_rows = pl.DataFrame({"user_id": users, "ts": [at(1)] * 4, "created": [at(1)] * 4,
                               "limit": [u * 100 for u in users]})
    limit_rows.write_parquet(tmp_path / "l.parquet")
    order_rows = pl.DataFrame({"order_id": ["a", "b", "c", "d", "e"], "ts": [at(1)] * 5, "created": [at(1)] * 5,
                               "user_id": [1, 2, 3, 4, None]})
    order_rows.write_parquet(tmp_path / "o.parquet")
    refs = ["order.user.tier", "order.user.limit"]
    with _project(tmp_path, defs) as project:
        project.materialize(until=at(2), incremental=False)
    with _project(tmp_path, defs, 1.0) as project:
        project.query({"order_id": ["a", "b", "c", "d", "e"]}, refs, now=at(3))
    with _project(tmp_path, defs) as project:
        assert project.skew(sample=None).mismatches == 0
    # user 1 (order a): a newer tier never materialized; user 2 (order b): its limit arrives late,
    # dated before the request; order c now points at user 4 (its own row rewritten in place);
    # order d is moved to user 3 by a row that arrives late (found in the relationship's own view)
    pl.DataFrame({"user_id": users + [1], "ts": [at(1)] * 4 + [at(2, 12)],
                  "tier": [f"t{u}" for u in users] + ["t1-new"]}).write_parquet(tmp_path / "p.parquet")
    late = pl.DataFrame({"user_id": [2], "ts": [at(2, 6)], "created": [later], "limit": [-2]})
    pl.concat([limit_rows, late]).write_parquet(tmp_path / "l.parquet")
    moved = pl.DataFrame({"order_id": ["d"], "ts": [at(2, 6)], "created": [later], "user_id": [3]})
    pl.concat([order_rows.with_columns(user_id=pl.when(pl.col("order_id") == "c").then(4).otherwise(pl.col("user_id"))),
               moved]).write_parquet(tmp_path / "o.parquet")
    with _project(tmp_path, defs) as project:
        report = project.skew(sample=None, examples=10)
    causes = {ref: (f.mismatches, dict(f.causes)) for ref, f in report.features.items()}
    assert causes == {"order.user.tier": (3, {"store_behind": 1, "source_rewritten": 1, "late_data": 1}),
                      "order.user.limit": (3, {"late_data": 2, "source_rewritten": 1})}, "\n".join(report.lines())
    by_order = {(m.logged.feature, m.logged.entity["order_id"]): m.cause
                for f in report.features.values() for m in f.examples}
    assert by_order == {("order.user.tier", "a"): "store_behind", ("order.user.tier", "c"): "source_rewritten",
                        ("order.user.tier", "d"): "late_data", ("order.user.limit", "b"): "late_data",
                        ("order.user.limit", "c"): "source_rewritten", ("order.user.limit", "d"): "late_data"}
    moved_detail = next(m.detail for m in report.features["order.user.tier"].examples if m.logged.entity["order_id"] == "d")
    assert moved_detail.startswith("ov: 1 row(s) of this key")


@pytest.mark.parametrize("name", ["Date", "Timestamp", "Float64"])
def test_a_relationship_via_a_root_key_of_every_dtype_is_searched_and_records_no_baseline(tmp_path, name):
    dtype, keys, _ = KEYS[name]
    keys = keys[:2] if name != "Float64" else [-0.0, 1.5]
    day = pt.Entity("day", keys={"d": dtype})
    visit = pt.Entity("visit", keys={"d": dtype, "user_id": pt.Int64}, relationships={"daily": pt.HasOne(day, via="d")})
    weather = pt.FeatureView("weather", entity=day, source=pt.ParquetSource("w", path="w.parquet", event_time="ts"),
                             features=[pt.Feature("temp", pt.Float64)])
    defs = [day, visit, weather]

    def project(rate: float = 0.0) -> pt.Project:
        return pt.Project.from_definitions(defs, root=str(tmp_path), online_store_path=str(tmp_path / "o.db"),
                                           feature_log_sample_rate=rate, record_baselines=True,
                                           monitor_path=str(tmp_path / "m.db"))

    pl.DataFrame({"d": keys, "ts": [at(1)] * 2, "temp": [1.0, 2.0]}).write_parquet(tmp_path / "w.parquet")
    with project() as p:
        p.materialize(until=at(2), incremental=False)
        p.training_set(pl.DataFrame({"d": keys, "user_id": [1, 2], "timestamp": [at(3)] * 2}), ["visit.daily.temp"])
    with project(1.0) as p:
        p.query({"d": keys, "user_id": [1, 2]}, ["visit.daily.temp"], now=at(3))
    pl.DataFrame({"d": keys, "ts": [at(1)] * 2, "temp": [1.5, 2.0]}).write_parquet(tmp_path / "w.parquet")
    with project() as p:
        before = p.monitor_store().baselines("visit.daily.temp", p.feature_versions(p.plan(["visit.daily.temp"]))[
            "visit.daily.temp"])
        report = p.skew(sample=None)
        after = p.monitor_store().baselines("visit.daily.temp", p.feature_versions(p.plan(["visit.daily.temp"]))[
            "visit.daily.temp"])
    assert dict(report.features["visit.daily.temp"].causes) == {"source_rewritten": 1}
    assert len(before) == len(after) == 1  # a replay is not what a model trained on: no baseline
