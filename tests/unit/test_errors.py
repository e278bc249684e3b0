"""Each mistake a user can make gets its own error type and a message that says what and where.

Definition errors carry the file:line of the definition at fault; data errors name the column, the
source or spine, and the columns that do exist.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import re
from typing import Annotated

import polars as pl
import pytest

import parity as pt
from parity.errors import (
    CycleError,
    DataError,
    DefinitionError,
    DuplicateNameError,
    MissingColumnError,
    NaiveTimestampError,
    SignatureError,
    UnknownFeatureError,
)
from parity.plan.catalog import Catalog

HERE = __file__
UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def next_line() -> str:
    """``file:line`` of the line after the caller's."""
    frame = inspect.currentframe().f_back  # type: ignore[union-attr]
    return f"{HERE}:{frame.f_lineno + 1}"  # type: ignore[union-attr]


def entities():  # type: ignore[no-untyped-def]
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    order = pt.Entity("order", keys={"order_id": pt.String}, relationships={"user": pt.HasOne(user, via="user_id")})
    return user, order


def views(user, order, users_path: str = "users.parquet", *, limit_column: str = "credit_limit",  # type: ignore[no-untyped-def]
          event_time: str = "updated_at", created_time: str | None = None, timezone: str | None = None):
    profile = pt.FeatureView(
        "profile", entity=user,
        source=pt.ParquetSource("users", path=users_path, event_time=event_time, created_time=created_time,
                                timezone=timezone),
        features=[pt.Feature("country", pt.String), pt.Feature("ceiling", pt.Float64, column=limit_column)],
    )
    facts = pt.FeatureView("facts", entity=order, source=pt.ParquetSource("orders", path="orders.parquet", event_time="ts"),
                           features=[pt.Feature("user_id", pt.Int64), pt.Feature("amount", pt.Float64)])
    return profile, facts


def project(tmp_path, definitions) -> pt.Project:  # type: ignore[no-untyped-def]
    return pt.Project.from_definitions(definitions, root=str(tmp_path), online_store_path=str(tmp_path / "online.db"),
                                       registry_path=str(tmp_path / "registry.db"))


def write_users(tmp_path, *, naive: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """users.parquet; ``naive`` names the one timestamp column written without a time zone."""
    def stamp(column: str, value: dt.datetime) -> list[dt.datetime]:
        return [value.replace(tzinfo=None) if column == naive else value]

    pl.DataFrame({
        "user_id": [1], "updated_at": stamp("updated_at", T0), "ingested_at": stamp("ingested_at", T0),
        "signup_at": stamp("signup_at", T0 - dt.timedelta(days=3)), "credit_limit": [250.0], "country": ["DE"],
    }).write_parquet(tmp_path / "users.parquet")


def user_spine(**overrides: object) -> pl.DataFrame:
    columns: dict[str, object] = {"user_id": [1], "timestamp": [T0 + dt.timedelta(days=1)]}
    columns.update(overrides)
    return pl.DataFrame({k: v for k, v in columns.items() if v is not None})


# --- unknown features -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["training_set", "query"])
def test_unknown_feature_says_did_you_mean(tmp_path, path):
    write_users(tmp_path)
    user, order = entities()
    p = project(tmp_path, [user, order, *views(user, order)])
    with pytest.raises(UnknownFeatureError) as info:
        if path == "training_set":
            p.training_set(user_spine(), ["user.country", "user.contry"])
        else:
            p.query({"user_id": [1]}, ["user.contry"], now=T0)
    err = info.value
    assert err.reference == "user.contry"
    assert err.suggestions[0] == "user.country"
    assert "unknown feature 'user.contry'" in str(err) and "did you mean 'user.country'" in str(err)
    p.close()


def test_unknown_relationship_hop_suggests_the_reachable_feature():
    user, order = entities()
    catalog_defs = [user, order, *views(user, order)]
    p = pt.Project.from_definitions(catalog_defs)
    with pytest.raises(UnknownFeatureError) as info:
        p.plan(["order.usr.country"])
    assert info.value.suggestions[0] == "order.user.country"
    assert "did you mean 'order.user.country'" in str(info.value)


def test_unknown_feature_with_nothing_close_makes_no_suggestion():
    user, order = entities()
    p = pt.Project.from_definitions([user, order, *views(user, order)])
    with pytest.raises(UnknownFeatureError) as info:
        p.plan(["user.zzzzzzzzzz"])
    assert info.value.suggestions == []
    assert "did you mean" not in str(info.value)


# --- resolvers --------------------------------------------------------------------------------


def test_resolver_cycle_names_every_resolver_in_it():
    user, order = entities()

    location = next_line()
    @pt.resolver(entity=user, outputs=pt.Feature("a", pt.Float64))
    def make_a(b: float | None) -> float | None:
        return b

    @pt.resolver(entity=user, outputs=pt.Feature("b", pt.Float64))
    def make_b(c: float | None) -> float | None:
        return c

    @pt.resolver(entity=user, outputs=pt.Feature("c", pt.Float64))
    def make_c(a: float | None, ceiling: float | None) -> float | None:
        return a

    with pytest.raises(CycleError) as info:
        Catalog([user, order, *views(user, order), make_a, make_b, make_c])
    message = str(info.value)
    assert [step.split(" ")[0] for step in info.value.chain] == ["make_a", "make_b", "make_c", "make_a"]
    assert re.search(r"make_a \(user\.a\) -> make_b \(user\.b\) -> make_c \(user\.c\) -> make_a", message), message
    assert info.value.location == location and location in message


def test_resolver_reading_its_own_output_is_a_cycle():
    user, order = entities()

    @pt.resolver(entity=user, outputs=pt.Feature("echo", pt.String))
    def echo(echo: str | None) -> str | None:
        return echo

    with pytest.raises(CycleError, match=r"echo \(user\.echo\) -> echo \(user\.echo\)"):
        Catalog([user, order, *views(user, order), echo])


def test_resolver_input_that_does_not_exist_names_the_resolver_and_where():
    user, order = entities()

    location = next_line()
    @pt.resolver(entity=user, outputs=pt.Feature("double", pt.Float64))
    def double(ceilng: float | None) -> float | None:
        return None if ceilng is None else 2 * ceilng

    with pytest.raises(UnknownFeatureError) as info:
        Catalog([user, order, *views(user, order), double])
    message = str(info.value)
    assert "resolver 'double'" in message and "'user.ceilng'" in message
    assert info.value.suggestions[0] == "user.ceiling"
    assert info.value.location == location and f"(defined at {location})" in message


def test_resolver_input_through_an_unknown_relationship():
    user, order = entities()

    location = next_line()
    @pt.resolver(entity=order, outputs=pt.Feature("share", pt.Float64))
    def share(amount: float | None, limit: Annotated[float | None, "usr.ceiling"]) -> float | None:
        return None if amount is None or not limit else amount / limit

    with pytest.raises(UnknownFeatureError) as info:
        Catalog([user, order, *views(user, order), share])
    assert "resolver 'share'" in str(info.value) and "'order.usr.ceiling'" in str(info.value)
    assert info.value.suggestions[0] == "order.user.ceiling"
    assert info.value.location == location


def test_return_annotation_must_agree_with_the_output_dtype():
    user, _ = entities()
    with pytest.raises(SignatureError) as info:
        location = next_line()
        @pt.resolver(entity=user, outputs=pt.Feature("flag", pt.Bool))
        def flag(ceiling: float | None) -> int:
            return 1
    message = str(info.value)
    assert "resolver 'flag'" in message and "Int64" in message and "feature 'flag'" in message and "Bool" in message
    assert info.value.location == location and f"(defined at {location})" in message


def test_return_tuple_must_agree_with_each_output():
    user, _ = entities()
    with pytest.raises(SignatureError) as info:
        location = next_line()
        @pt.resolver(entity=user, outputs=[pt.Feature("n", pt.Int64), pt.Feature("label", pt.String)])
        def pair(ceiling: float | None) -> tuple[int, float]:
            return 1, 2.0
    assert "feature 'label'" in str(info.value) and "Float64" in str(info.value) and "String" in str(info.value)
    assert info.value.location == location


@pytest.mark.parametrize("through_relationship", [False, True])
def test_parameter_annotation_must_agree_with_the_input_dtype(through_relationship):
    user, order = entities()
    if through_relationship:
        location = next_line()
        @pt.resolver(entity=order, outputs=pt.Feature("label", pt.String))
        def label(limit: Annotated[int | None, "user.ceiling"]) -> str:
            return str(limit)
        param, ref = "limit", "order.user.ceiling"
    else:
        location = next_line()
        @pt.resolver(entity=user, outputs=pt.Feature("label", pt.String))
        def label(ceiling: int | None) -> str:
            return str(ceiling)
        param, ref = "ceiling", "user.ceiling"
    with pytest.raises(SignatureError) as info:
        Catalog([user, order, *views(user, order), label])
    message = str(info.value)
    assert f"parameter {param!r} is annotated Int64 but feature {ref!r} is Float64" in message
    assert "resolver 'label'" in message
    assert info.value.location == location and f"(defined at {location})" in message


# --- naive timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["updated_at", "ingested_at", "signup_at"])
@pytest.mark.parametrize("action", ["training_set", "materialize"])
def test_naive_timestamps_in_a_source_are_refused(tmp_path, column, action):
    """The event time, the created time, and a Timestamp feature column."""
    write_users(tmp_path, naive=column)

    def make(timezone: str | None) -> pt.Project:
        user = pt.Entity("user", keys={"user_id": pt.Int64})
        view = pt.FeatureView(
            "profile", entity=user,
            source=pt.ParquetSource("users", path="users.parquet", event_time="updated_at",
                                    created_time="ingested_at", timezone=timezone),
            features=[pt.Feature("country", pt.String), pt.Feature("signup_at", pt.Timestamp)],
        )
        return project(tmp_path, [user, view])

    def run(p: pt.Project):  # type: ignore[no-untyped-def]
        if action == "training_set":
            return p.training_set(user_spine(), ["user.signup_at"])
        return p.materialize(until=T0 + dt.timedelta(days=1), incremental=False)

    p = make(None)
    with pytest.raises(NaiveTimestampError) as info:
        run(p)
    message = str(info.value)
    assert "source 'users'" in message and f"column {column!r}" in message and "timezone=" in message
    assert HERE in message  # where the source is defined
    p.close()
    # Declaring the zone is the way out, and the value is then read in that zone.
    (tmp_path / "online.db").unlink(missing_ok=True)
    p = make("UTC")
    if action == "training_set":
        assert p.training_set(user_spine(), ["user.signup_at"]).column("user.signup_at").to_pylist() == [
            T0 - dt.timedelta(days=3)
        ]
    else:
        run(p)
        assert p.query({"user_id": [1]}, ["user.signup_at"], now=T0 + dt.timedelta(days=1)).rows == [
            {"user.signup_at": T0 - dt.timedelta(days=3)}
        ]
    p.close()


def test_naive_spine_timestamps_are_refused(tmp_path):
    write_users(tmp_path)
    user, order = entities()
    p = project(tmp_path, [user, order, *views(user, order)])
    naive = user_spine(timestamp=[dt.datetime(2024, 1, 2)])
    with pytest.raises(NaiveTimestampError) as info:
        p.training_set(naive, ["user.country"])
    assert "spine column 'timestamp'" in str(info.value) and "timezone=" in str(info.value)
    # Declared, the same spine works.
    assert p.training_set(naive, ["user.country"], timezone="UTC").column("user.country").to_pylist() == ["DE"]
    p.close()


def test_naive_query_and_materialize_times_are_refused(tmp_path):
    write_users(tmp_path)
    user, order = entities()
    p = project(tmp_path, [user, order, *views(user, order)])
    with pytest.raises(NaiveTimestampError, match="materialize until"):
        p.materialize(until=dt.datetime(2024, 1, 2), incremental=False)
    with pytest.raises(NaiveTimestampError, match="query now"):
        p.query({"user_id": [1]}, ["user.country"], now=dt.datetime(2024, 1, 2))
    p.close()


# --- missing columns ----------------------------------------------------------------------------


def test_spine_without_its_timestamp_column(tmp_path):
    write_users(tmp_path)
    user, order = entities()
    p = project(tmp_path, [user, order, *views(user, order)])
    spine = user_spine(timestamp=None, ts=[T0])
    with pytest.raises(MissingColumnError) as info:
        p.training_set(spine, ["user.country"])
    message = str(info.value)
    assert "timestamp column 'timestamp'" in message and "['user_id', 'ts']" in message
    assert "timestamp_column=" in message
    assert p.training_set(spine, ["user.country"], timestamp_column="ts").num_rows == 1
    p.close()


def test_spine_without_an_entity_key_column(tmp_path):
    write_users(tmp_path)
    user, order = entities()
    p = project(tmp_path, [user, order, *views(user, order)])
    spine = user_spine(user_id=None, uid=[1])
    with pytest.raises(MissingColumnError) as info:
        p.training_set(spine, ["user.country"])
    message = str(info.value)
    assert "column 'user_id' for entity key 'user_id'" in message and "['timestamp', 'uid']" in message
    assert "key_columns=" in message
    assert p.training_set(spine, ["user.country"], key_columns={"user_id": "uid"}).column("user.country").to_pylist() == ["DE"]
    p.close()


@pytest.mark.parametrize("action", ["training_set", "materialize"])
def test_source_column_that_does_not_exist(tmp_path, action):
    write_users(tmp_path)
    user, order = entities()
    p = project(tmp_path, [user, order, *views(user, order, limit_column="credit_limt")])
    with pytest.raises(MissingColumnError) as info:
        if action == "training_set":
            p.training_set(user_spine(), ["user.ceiling"])
        else:
            p.materialize(until=T0, views=["profile"], incremental=False)
    message = str(info.value)
    assert "source 'users'" in message and "column 'credit_limt'" in message
    assert re.search(r"\bceiling\b", message), "the feature that needs the column is not named"
    assert "feature view 'profile'" in message
    assert "did you mean 'credit_limit'?" in message
    assert "credit_limit" in message.split("its columns:")[1]
    p.close()


def test_source_event_time_column_that_does_not_exist(tmp_path):
    write_users(tmp_path)
    user, order = entities()
    p = project(tmp_path, [user, order, *views(user, order, event_time="updated")])
    with pytest.raises(MissingColumnError) as info:
        p.training_set(user_spine(), ["user.country"])
    message = str(info.value)
    assert "source 'users'" in message and "column 'updated'" in message and "did you mean 'updated_at'?" in message
    assert isinstance(info.value, DataError)
    p.close()


# --- duplicate names ----------------------------------------------------------------------------


def test_feature_defined_in_two_views():
    user, order = entities()
    profile, facts = views(user, order)
    first = profile.features[0].location
    second = next_line()
    again = pt.FeatureView("profile_again", entity=user, features=[pt.Feature("country", pt.String)],
                           source=pt.ParquetSource("users2", path="users2.parquet", event_time="ts"))
    with pytest.raises(DuplicateNameError) as info:
        Catalog([user, order, profile, facts, again])
    message = str(info.value)
    assert "feature 'user.country' is defined twice" in message
    assert f"first at {first}" in message and info.value.location == second and first != second


def test_resolver_output_with_the_name_of_a_feature():
    user, order = entities()
    profile, facts = views(user, order)

    location = next_line()
    @pt.resolver(entity=user, outputs=pt.Feature("country", pt.String))
    def country() -> str:
        return "DE"

    with pytest.raises(DuplicateNameError) as info:
        Catalog([user, order, profile, facts, country])
    assert "feature 'user.country' is defined twice" in str(info.value)
    assert info.value.location == location and f"first at {profile.features[0].location}" in str(info.value)


def test_two_views_entities_or_resolvers_with_one_name():
    user, order = entities()
    profile, facts = views(user, order)
    other_user = pt.Entity("user", keys={"user_id": pt.Int64})
    with pytest.raises(DuplicateNameError, match=r"entity 'user' is defined twice \(first at .*test_errors.py:\d+\)"):
        Catalog([user, order, profile, facts, other_user])
    other_profile = pt.FeatureView("profile", entity=user, features=[pt.Feature("other", pt.String)],
                                   source=pt.ParquetSource("users2", path="users2.parquet", event_time="ts"))
    with pytest.raises(DuplicateNameError, match=r"feature view 'profile' is defined twice"):
        Catalog([user, order, profile, facts, other_profile])

    def twice():  # type: ignore[no-untyped-def]
        @pt.resolver(entity=user, outputs=pt.Feature("tag", pt.String))
        def tag() -> str:
            return "x"

        return tag

    with pytest.raises(DuplicateNameError, match=r"resolver 'tag' is defined twice"):
        Catalog([user, order, profile, facts, twice(), twice()])


def test_the_same_definition_object_twice_is_not_a_duplicate():
    user, order = entities()
    profile, facts = views(user, order)
    assert set(Catalog([user, order, profile, facts, profile, user]).views) == {"profile", "facts"}


def test_definition_errors_are_definition_errors():
    """Catching DefinitionError catches every definition mistake above (and no data error)."""
    assert issubclass(UnknownFeatureError, DefinitionError) and issubclass(CycleError, DefinitionError)
    assert issubclass(SignatureError, DefinitionError) and issubclass(DuplicateNameError, DefinitionError)
    assert issubclass(NaiveTimestampError, DataError) and issubclass(MissingColumnError, DataError)
    assert not issubclass(MissingColumnError, DefinitionError)
    assert os.path.basename(HERE) == "test_errors.py"
