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


def _view(path: str = "events.parquet", where: pt.define.expressions.Expr | None = None) -> pt.WindowView:  # type: ignore[name-defined]
    source = pt.ParquetSource(name="txns", path=path, event_time="ts")
    return pt.WindowView("velocity", entity=card, source=source, windows=["10m", "1h"],
                         columns={"amount": pt.Float64, "merchant": pt.String, "status": pt.String},
                         features=[pt.Aggregate("n", pt.agg.count(), where=where),
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
