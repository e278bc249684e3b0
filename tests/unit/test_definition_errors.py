"""Every definition error says what is wrong and where (file:line of the definition)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import pytest

import parity as pt
from parity.errors import (
    CycleError,
    DefinitionError,
    DuplicateNameError,
    SignatureError,
    UnknownFeatureError,
)
from parity.plan.catalog import Catalog
from parity.plan.planner import plan

HERE = __file__


def _base():  # type: ignore[no-untyped-def]
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("v", entity=user, source=pt.ParquetSource("s", path="x.parquet", event_time="ts"),
                          features=[pt.Feature("amount", pt.Float64), pt.Feature("country", pt.String)])
    return user, view


def test_unknown_feature_suggests_the_close_name():
    catalog = Catalog(_base())
    with pytest.raises(UnknownFeatureError) as info:
        plan(catalog, ["user.amont"])
    assert info.value.suggestions[0] == "user.amount"
    assert "did you mean 'user.amount'" in str(info.value)


def test_cycle_names_the_resolvers_and_where():
    user, view = _base()

    @pt.resolver(entity=user, outputs=pt.Feature("a", pt.Float64))
    def make_a(b: float) -> float:
        return b

    @pt.resolver(entity=user, outputs=pt.Feature("b", pt.Float64))
    def make_b(a: float) -> float:
        return a

    with pytest.raises(CycleError) as info:
        Catalog([user, view, make_a, make_b])
    assert "make_a" in str(info.value) and "make_b" in str(info.value)
    assert HERE in str(info.value)


def test_resolver_input_that_does_not_exist():
    user, view = _base()

    @pt.resolver(entity=user, outputs=pt.Feature("double", pt.Float64))
    def double(amout: float) -> float:
        return amout * 2

    with pytest.raises(UnknownFeatureError) as info:
        Catalog([user, view, double])
    message = str(info.value)
    assert "resolver 'double'" in message and "user.amout" in message and "user.amount" in message
    assert f"{HERE}:" in message


def test_return_annotation_must_match_the_output_dtype():
    user, _ = _base()
    with pytest.raises(SignatureError) as info:
        @pt.resolver(entity=user, outputs=pt.Feature("flag", pt.Bool))
        def flag(amount: float) -> int:
            return 1
    assert "declared Bool" in str(info.value) and f"{HERE}:" in str(info.value)


def test_parameter_annotation_must_match_the_input_dtype():
    user, view = _base()

    @pt.resolver(entity=user, outputs=pt.Feature("up", pt.String))
    def up(country: Annotated[int, "amount"]) -> str:
        return str(country)

    with pytest.raises(SignatureError, match=r"parameter 'country' is annotated Int64 but feature 'user.amount' is Float64"):
        Catalog([user, view, up])


def test_duplicates_are_refused_with_both_places():
    user, view = _base()
    again = pt.FeatureView("v2", entity=user, source=view.source, features=[pt.Feature("amount", pt.Float64)])
    with pytest.raises(DuplicateNameError, match="defined twice"):
        Catalog([user, view, again])


def test_relationship_via_must_exist_and_match_the_key_type():
    user, view = _base()
    order = pt.Entity("order", keys={"order_id": pt.Int64}, relationships={"user": pt.HasOne(user, via="buyer")})
    with pytest.raises(UnknownFeatureError, match="relationship order.user"):
        Catalog([user, view, order])


def test_max_staleness_needs_a_source_that_answers_lookups():
    user, view = _base()
    with pytest.raises(DefinitionError, match="max_staleness needs a source"):
        pt.FeatureView("live", entity=user, source=view.source, features=[pt.Feature("x", pt.Int64)],
                       max_staleness=dt.timedelta(seconds=1))


def test_connection_strings_must_be_references():
    with pytest.raises(DefinitionError, match="must be a reference"):
        pt.PostgresSource("db", table="t", connection="postgresql://u:secret@h/db", event_time="ts")
