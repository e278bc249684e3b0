"""Window definitions: references, errors at definition time, explain, versions, subsets."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import parity as pt
from parity.errors import DefinitionError, UnknownFeatureError
from parity.plan.catalog import Catalog
from parity.registry.versions import Versions

card = pt.Entity("card", keys={"card_id": pt.Int64})
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _view(path: str = "events.parquet", where: pt.define.expressions.Expr | None = None,  # type: ignore[name-defined]
          description: str = "") -> pt.WindowView:
    source = pt.ParquetSource(name="txns", path=path, event_time="ts")
    return pt.WindowView("velocity", entity=card, source=source, windows=["10m", "1h"],
                         columns={"amount": pt.Float64, "merchant": pt.String, "status": pt.String},
                         features=[pt.Aggregate("n", pt.agg.count(), where=where, description=description),
                                   pt.Aggregate("total", pt.agg.sum("amount")),
                                   pt.Aggregate("merchants", pt.agg.count_distinct("merchant"), windows=["30d"])])


def test_references_name_a_width_and_spellings_of_one_width_are_one_feature() -> None:
    catalog = Catalog([card, _view()])
    assert catalog.parse("card.n[60m]").feature == "n[1h]"
    assert catalog.parse("card.merchants[720h]").feature == "merchants[30d]"
    with pytest.raises(DefinitionError, match=r"window aggregate; name its width, e.g. card.n\[10m\]"):
        catalog.parse("card.n")
    with pytest.raises(DefinitionError, match=r"has no 1d window; defined: n\[10m\], n\[1h\]"):
        catalog.parse("card.n[1d]")
    with pytest.raises(DefinitionError, match="is not a width"):
        catalog.parse("card.n[ten minutes]")
    with pytest.raises(UnknownFeatureError):
        catalog.parse("card.nope[10m]")


def test_definition_errors_name_what_and_where() -> None:
    source = pt.ParquetSource(name="txns", path="x.parquet", event_time="ts")
    with pytest.raises(DefinitionError, match=r"column\(s\) \['amount'\] are not declared"):
        pt.WindowView("v", entity=card, source=source, columns={}, features=[pt.Aggregate("s", pt.agg.sum("amount"))])
    with pytest.raises(DefinitionError, match="sum needs an Int64 or Float64 column; 'm' is String"):
        pt.WindowView("v", entity=card, source=source, columns={"m": pt.String},
                      features=[pt.Aggregate("s", pt.agg.sum("m"))])
    with pytest.raises(DefinitionError, match="windows '60m' and '1h' are the same width"):
        pt.Aggregate("n", pt.agg.count(), windows=["60m", "1h"])
    with pytest.raises(DefinitionError, match="quantile must be between 0 and 1"):
        pt.agg.approx_percentile("amount", 1.5)
    with pytest.raises(TypeError, match="combine filters with &, | and ~"):
        _ = pt.col("a") > 1 and pt.col("b") < 2  # noqa: PLR1701 - the mistake this guards against


def test_explain_shows_the_window_step() -> None:
    project = pt.Project.from_definitions([card, _view()])
    text = project.explain(["card.n[10m]", "card.total[1h]"])
    assert "window card [card by card_id] view velocity, events in (t - w, t]: n[10m], total[1h]" in text


def test_the_filter_is_part_of_the_version_and_the_description_is_not() -> None:
    def version(view: pt.WindowView) -> str:
        catalog = Catalog([card, view])
        return Versions(catalog).version(catalog.feature_at(catalog.parse("card.n[10m]")))

    plain = version(_view())
    assert version(_view(where=pt.col("status") == "ok")) != plain
    assert version(_view(where=pt.col("status") == "ok")) == version(_view(where=pt.col("status") == "ok"))
    assert version(_view(description="payments in the window")) == plain


def test_a_subset_of_a_views_features_reads_only_its_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Regression: the masks of aggregates not asked for read columns the scan had left out.
    pl.DataFrame({"card_id": [1, 1], "ts": [T0, T0 + dt.timedelta(minutes=5)], "amount": [1.0, 2.0],
                  "merchant": ["a", "b"], "status": ["ok", "no"]}).write_parquet(tmp_path / "events.parquet")
    view = _view(str(tmp_path / "events.parquet"), where=pt.col("status") == "ok")
    project = pt.Project.from_definitions([card, view], root=str(tmp_path))
    spine = pl.DataFrame({"card_id": [1], "timestamp": [T0 + dt.timedelta(minutes=6)]})
    table = pl.from_arrow(project.training_set(spine, ["card.merchants[30d]"]))
    assert table["card.merchants[30d]"].to_list() == [2]  # type: ignore[index]
    table = pl.from_arrow(project.training_set(spine, ["card.n[10m]"]))
    assert table["card.n[10m]"].to_list() == [1]  # type: ignore[index]


def test_a_view_of_counts_only_indexes_and_counts_every_event(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Regression: a mask that is a literal (an unfiltered count) came out one row long, so the
    # kernel read past it and the online index kept a single event.
    times = [T0 + dt.timedelta(minutes=m) for m in range(5)]
    pl.DataFrame({"card_id": [1] * 5, "ts": times}).write_parquet(tmp_path / "events.parquet")
    source = pt.ParquetSource(name="txns", path=str(tmp_path / "events.parquet"), event_time="ts")
    view = pt.WindowView("counts", entity=card, source=source, windows=["1h"], features=[pt.Aggregate("n", pt.agg.count())])
    project = pt.Project.from_definitions([card, view], root=str(tmp_path))
    at = T0 + dt.timedelta(minutes=30)
    table = pl.from_arrow(project.training_set(pl.DataFrame({"card_id": [1], "timestamp": [at]}), ["card.n[1h]"]))
    assert table["card.n[1h]"].to_list() == [5]  # type: ignore[index]
    project.materialize(until=at)
    assert project.query({"card_id": 1}, ["card.n[1h]"], now=at).rows[0]["card.n[1h]"] == 5
    project.close()


def test_float_keys_nan_and_negative_zero_through_a_relationship(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Regressions: NaN keys were grouped by a tuple (NaN != NaN: each event began a new prefix), and
    # Float64 keys reached through a relationship were not made canonical online.
    account = pt.Entity("account", keys={"k": pt.Float64})
    txn = pt.Entity("txn", keys={"txn_id": pt.String}, relationships={"account": pt.HasOne(account, via="k")})
    nan = float("nan")
    events = pl.DataFrame({"k": [0.0, -0.0, nan, nan, 1.0], "ts": [T0 + dt.timedelta(seconds=s) for s in range(5)],
                           "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    events.write_parquet(tmp_path / "events.parquet")
    pl.DataFrame({"txn_id": ["a", "b"], "k": [-0.0, nan], "ts": [T0, T0]}).write_parquet(tmp_path / "txns.parquet")
    source = pt.ParquetSource(name="ev", path=str(tmp_path / "events.parquet"), event_time="ts")
    view = pt.WindowView("acct", entity=account, source=source, columns={"x": pt.Float64}, windows=["lifetime"],
                         features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("s", pt.agg.sum("x")),
                                   pt.Aggregate("top", pt.agg.max("x"))])
    facts = pt.FeatureView("facts", entity=txn, features=[pt.Feature("k", pt.Float64)],
                           source=pt.ParquetSource(name="t", path=str(tmp_path / "txns.parquet"), event_time="ts"))
    project = pt.Project.from_definitions([account, txn, view, facts], root=str(tmp_path))
    at = T0 + dt.timedelta(minutes=1)
    project.materialize(until=at)
    refs = ["txn.account.n[lifetime]", "txn.account.s[lifetime]", "txn.account.top[lifetime]"]
    online = project.query({"txn_id": ["a", "b"]}, refs, now=at).rows
    assert online == [dict(zip(refs, [2, 3.0, 2.0])), dict(zip(refs, [2, 7.0, 4.0]))]
    offline = pl.from_arrow(project.training_set(pl.DataFrame({"txn_id": ["a", "b"], "timestamp": [at, at]}), refs))
    assert offline.select(refs).rows(named=True) == online  # type: ignore[union-attr]
    project.close()


def test_a_relationship_without_a_target_gives_null_on_both_paths(tmp_path) -> None:  # type: ignore[no-untyped-def]
    txn = pt.Entity("txn", keys={"txn_id": pt.String}, relationships={"card": pt.HasOne(card, via="card_id")})
    pl.DataFrame({"card_id": [1], "ts": [T0]}).write_parquet(tmp_path / "events.parquet")
    pl.DataFrame({"txn_id": ["a", "b"], "card_id": [1, None], "ts": [T0, T0]},
                 schema={"txn_id": pl.String, "card_id": pl.Int64, "ts": pl.Datetime("us", "UTC")}
                 ).write_parquet(tmp_path / "txns.parquet")
    view = pt.WindowView("c", entity=card, windows=["1h"], features=[pt.Aggregate("n", pt.agg.count())],
                         source=pt.ParquetSource(name="ev", path=str(tmp_path / "events.parquet"), event_time="ts"))
    facts = pt.FeatureView("facts", entity=txn, features=[pt.Feature("card_id", pt.Int64)],
                           source=pt.ParquetSource(name="t", path=str(tmp_path / "txns.parquet"), event_time="ts"))
    project = pt.Project.from_definitions([card, txn, view, facts], root=str(tmp_path))
    at = T0 + dt.timedelta(minutes=1)
    project.materialize(until=at)
    online = [r["txn.card.n[1h]"] for r in project.query({"txn_id": ["a", "b", "c"]}, ["txn.card.n[1h]"], now=at).rows]
    offline = pl.from_arrow(project.training_set(pl.DataFrame({"txn_id": ["a", "b", "c"], "timestamp": [at] * 3}),
                                                 ["txn.card.n[1h]"]))["txn.card.n[1h]"].to_list()  # type: ignore[index]
    assert online == offline == [1, None, None]
    project.close()


def test_distinct_aggregates_of_dates_and_times(tmp_path) -> None:  # type: ignore[no-untyped-def]
    days = [dt.date(2025, 1, d) for d in (1, 2, 1)]
    pl.DataFrame({"card_id": [1, 1, 1], "ts": [T0 + dt.timedelta(seconds=s) for s in range(3)], "day": days,
                  "at": [T0, T0, T0 + dt.timedelta(hours=1)]}).write_parquet(tmp_path / "events.parquet")
    view = pt.WindowView("d", entity=card, windows=["lifetime"], columns={"day": pt.Date, "at": pt.Timestamp},
                         source=pt.ParquetSource(name="ev", path=str(tmp_path / "events.parquet"), event_time="ts"),
                         features=[pt.Aggregate("days", pt.agg.last_n_distinct("day", 5)),
                                   pt.Aggregate("n_at", pt.agg.approx_count_distinct("at"))])
    project = pt.Project.from_definitions([card, view], root=str(tmp_path))
    at = T0 + dt.timedelta(minutes=1)
    project.materialize(until=at)
    refs = ["card.days[lifetime]", "card.n_at[lifetime]"]
    online = project.query({"card_id": 1}, refs, now=at).rows[0]
    offline = pl.from_arrow(project.training_set(pl.DataFrame({"card_id": [1], "timestamp": [at]}), refs))
    assert online == {"card.days[lifetime]": [dt.date(2025, 1, 1), dt.date(2025, 1, 2)], "card.n_at[lifetime]": 2}
    assert offline.select(refs).row(0, named=True) == online  # type: ignore[union-attr]
    project.close()


@pytest.mark.parametrize(("width", "message"), [
    (dt.timedelta(microseconds=1500), "whole number of seconds"),
    ("99999999999999999999w", "longer than a century"),
    (dt.timedelta(days=999_999_999), "longer than a century"),
])
def test_widths_are_whole_seconds_up_to_a_century(width: object, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        pt.Aggregate("n", pt.agg.count(), windows=[width])  # type: ignore[list-item]


@pytest.mark.parametrize(("where", "message"), [
    (pt.col("amount") == "abc", "compares Float64 with String"),
    (pt.col("merchant") > 1, "compares String with int"),
    (pt.col("amount"), "needs a Bool column"),
    (pt.col("merchant").is_in(["a", 2]), "lists 2"),
    (pt.col("amount") == None, "use .is_null()"),  # noqa: E711 - the mistake this guards against
])
def test_filters_are_type_checked_when_defined(where: object, message: str) -> None:
    source = pt.ParquetSource(name="txns", path="x.parquet", event_time="ts")
    with pytest.raises(DefinitionError, match=message):
        pt.WindowView("v", entity=card, source=source, columns={"amount": pt.Float64, "merchant": pt.String},
                      features=[pt.Aggregate("n", pt.agg.count(), where=where)])  # type: ignore[arg-type]
