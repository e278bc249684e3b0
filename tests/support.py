"""Test support: a tiny two-entity project (users with late corrections, payments)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated

import polars as pl

import parity as pt

UTC = dt.timezone.utc


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, tzinfo=UTC)


def write_users(path: str) -> None:
    pl.DataFrame(
        {
            "user_id": [1, 1, 2, 1],
            "updated_at": [at(1), at(3), at(2), at(5)],
            "ingested_at": [at(1), at(6), at(2), at(5)],
            "country": ["DE", "FR", "US", None],
            "credit_limit": [100.0, 200.0, 50.0, 300.0],
        }
    ).write_parquet(path)


def write_payments(path: str) -> None:
    pl.DataFrame(
        {
            "payment_id": ["a", "b", "c"],
            "ts": [at(2), at(4), at(7)],
            "user_id": [1, 2, 1],
            "amount": [10.0, 500.0, 30.0],
        }
    ).write_parquet(path)


def small_definitions(root: str, *, max_age: dt.timedelta | None = dt.timedelta(days=10)) -> list[object]:
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    payment = pt.Entity("payment", keys={"payment_id": pt.String}, relationships={"user": pt.HasOne(user, via="user_id")})
    users = pt.ParquetSource("users", path=os.path.join(root, "users.parquet"), event_time="updated_at",
                             created_time="ingested_at")
    payments = pt.ParquetSource("payments", path=os.path.join(root, "payments.parquet"), event_time="ts")
    profile = pt.FeatureView(
        "profile", entity=user, source=users, max_age=max_age,
        features=[pt.Feature("country", pt.String), pt.Feature("limit", pt.Float64, column="credit_limit")],
    )
    facts = pt.FeatureView("facts", entity=payment, source=payments,
                           features=[pt.Feature("user_id", pt.Int64), pt.Feature("amount", pt.Float64)])

    @pt.resolver(entity=payment, outputs=pt.Feature("share_of_limit", pt.Float64))
    def share_of_limit(amount: float | None, limit: Annotated[float | None, "user.limit"]) -> float | None:
        if amount is None or not limit:
            return None
        return amount / limit

    return [user, payment, profile, facts, share_of_limit]




def assert_same_table(got: object, want: object, what: str = "") -> None:
    """Two Arrow tables equal bit for bit: the same schema and, cell by cell, the same value by
    ``semantics.values.same_value`` (NaN equal to NaN, -0.0 not 0.0; Arrow's own ``equals`` holds
    NaN unequal to itself)."""
    import pyarrow as pa

    from parity.semantics.values import same_value

    assert isinstance(got, pa.Table) and isinstance(want, pa.Table)
    assert got.schema.remove_metadata() == want.schema.remove_metadata(), what
    for name in want.column_names:
        for row, (g, w) in enumerate(zip(got.column(name).to_pylist(), want.column(name).to_pylist())):
            assert same_value(g, w) and repr(g) == repr(w), f"{what}: row {row}, {name}: {g!r} != {w!r}"
