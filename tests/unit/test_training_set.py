import datetime as dt

import pandas as pd
import polars as pl
import pytest

from parity.errors import DataError, EntityKeyError, MissingColumnError, NaiveTimestampError
from tests.support import at

FEATURES = ["payment.share_of_limit", "payment.user.country", "user.limit"]


def _spine():
    return pl.DataFrame({
        "payment_id": ["c", "a", "a", "zz", "b"],
        "user_id": [1, 1, 1, 7, 2],
        "timestamp": [at(7), at(2), at(2), at(7), at(4)],
        "label": [True, False, False, True, None],
    })


def test_shape_order_duplicates_and_passthrough(small_project):
    table = small_project.training_set(_spine(), FEATURES)
    assert table.column_names == ["payment_id", "user_id", "timestamp", "label", *FEATURES]
    assert table.select(["payment_id", "user_id", "timestamp", "label"]).equals(_spine().to_arrow())
    assert table.column("user.limit").to_pylist() == [300.0, 100.0, 100.0, None, 50.0]
    # payment c at day 7: user 1's latest visible row (day 5) has country null -> stays null
    assert table.column("payment.user.country").to_pylist() == [None, "DE", "DE", None, "US"]
    assert table.column("payment.share_of_limit").to_pylist() == [0.1, 0.1, 0.1, None, 10.0]


def test_every_spine_kind_gives_the_same_table(small_project, tmp_path):
    spine = _spine()
    path = tmp_path / "spine.parquet"
    spine.write_parquet(path)
    expected = small_project.training_set(spine, FEATURES)
    for kind in (spine.to_arrow(), spine.to_pandas(), str(path)):
        got = small_project.training_set(kind, FEATURES)
        assert got.select(FEATURES).equals(expected.select(FEATURES))
    assert isinstance(small_project.training_set(spine.to_pandas(), FEATURES).to_pandas(), pd.DataFrame)


def test_spine_key_mapping_and_declared_zone(small_project):
    spine = pl.DataFrame({"uid": [1], "ts": [dt.datetime(2024, 1, 7, 1, 0)]})  # naive, in Berlin time
    table = small_project.training_set(spine, ["user.limit"], timestamp_column="ts", key_columns={"user_id": "uid"},
                                       timezone="Europe/Berlin")
    assert table.column("user.limit").to_pylist() == [300.0]
    with pytest.raises(NaiveTimestampError):
        small_project.training_set(spine.rename({"uid": "user_id"}), ["user.limit"], timestamp_column="ts")


def test_spine_errors_name_the_column(small_project):
    with pytest.raises(MissingColumnError, match="'user_id'"):
        small_project.training_set(pl.DataFrame({"timestamp": [at(1)]}), ["user.limit"])
    with pytest.raises(EntityKeyError, match="user_id"):
        small_project.training_set(pl.DataFrame({"user_id": ["x"], "timestamp": [at(1)]}), ["user.limit"])
    with pytest.raises(DataError, match="already has column"):
        small_project.training_set(pl.DataFrame({"user_id": [1], "timestamp": [at(1)], "user.limit": [1]}), ["user.limit"])
