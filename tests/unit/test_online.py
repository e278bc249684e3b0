import datetime as dt

import pytest

import parity as pt
from parity.errors import EntityKeyError
from tests.support import at


def test_status_present_missing_expired_and_event_time(small_project):
    small_project.materialize(until=at(7), incremental=False)
    # user 1's last visible row (day 5) is 2 days old at day 7: present; at day 16 it is 11 days old: expired
    res = small_project.query({"user_id": [1, 2, 99]}, ["user.limit"], now=at(7), with_status=True)
    assert [d["user.limit"].status for d in res.details] == ["present", "present", "missing"]
    assert res.column("user.limit") == [300.0, 50.0, None]
    assert res.details[0]["user.limit"].event_time == at(5)
    late = small_project.query({"user_id": [1]}, ["user.limit"], now=at(16), with_status=True)
    assert late.details[0]["user.limit"].status == "expired" and late.rows[0]["user.limit"] is None
    edge = small_project.query({"user_id": [1]}, ["user.limit"], now=at(15), with_status=True)
    assert edge.details[0]["user.limit"].status == "present"  # exactly max_age old is still valid


def test_null_value_in_chosen_row_is_present_and_null(small_project):
    small_project.materialize(until=at(7), incremental=False)
    res = small_project.query([{"user_id": 1}], ["user.country"], now=at(7), with_status=True)
    assert res.rows[0]["user.country"] is None and res.details[0]["user.country"].status == "present"


def test_relationship_and_resolver_online(small_project):
    small_project.materialize(until=at(7), incremental=False)
    res = small_project.query({"payment_id": ["c", "b"]}, ["payment.share_of_limit", "payment.user.limit"], now=at(7))
    assert res.rows == [
        {"payment.share_of_limit": 30.0 / 300.0, "payment.user.limit": 300.0},
        {"payment.share_of_limit": 500.0 / 50.0, "payment.user.limit": 50.0},
    ]


def test_failing_resolver_gives_error_status_and_the_rest_still_answers(tmp_path):
    import polars as pl

    pl.DataFrame({"user_id": [1, 2], "ts": [at(1), at(1)], "x": [1.0, 0.0]}).write_parquet(tmp_path / "s.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("v", entity=user, source=pt.ParquetSource("s", path="s.parquet", event_time="ts"),
                          features=[pt.Feature("x", pt.Float64)])

    @pt.resolver(entity=user, outputs=pt.Feature("inverse", pt.Float64))
    def inverse(x: float) -> float:
        return 1 / x

    project = pt.Project.from_definitions([user, view, inverse], root=str(tmp_path),
                                          online_store_path=str(tmp_path / "o.db"))
    project.materialize(until=at(2), incremental=False)
    res = project.query({"user_id": [1, 2]}, ["user.inverse", "user.x"], now=at(2), with_status=True)
    assert res.rows[0] == {"user.inverse": 1.0, "user.x": 1.0}
    assert res.details[1]["user.inverse"].status == "error"
    assert "ZeroDivisionError" in res.details[1]["user.inverse"].error
    assert res.details[1]["user.x"].status == "present" and res.rows[1]["user.x"] == 0.0
    # what each step cost and how many of its keys failed, as the server's metrics see it
    seen: list[tuple[str, str, int, int]] = []
    project.observe_steps(lambda kind, name, seconds, keys, failed: seen.append((kind, name, keys, failed)))
    project.query({"user_id": [1, 2, 3]}, ["user.inverse"], now=at(2))
    assert seen == [("lookup", "v", 3, 0), ("resolver", "inverse", 3, 2)]  # 1/0 and 1/None fail
    project.close()


def test_async_resolver_online(tmp_path):
    import polars as pl

    pl.DataFrame({"user_id": [1], "ts": [at(1)], "x": [2.0]}).write_parquet(tmp_path / "s.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("v", entity=user, source=pt.ParquetSource("s", path="s.parquet", event_time="ts"),
                          features=[pt.Feature("x", pt.Float64)])

    @pt.resolver(entity=user, outputs=[pt.Feature("half", pt.Float64), pt.Feature("hour", pt.Int64)])
    async def halve(x: float | None, now: dt.datetime) -> tuple[float | None, int]:
        import asyncio

        await asyncio.sleep(0)
        return (None if x is None else x / 2), now.hour

    project = pt.Project.from_definitions([user, view, halve], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"))
    project.materialize(until=at(2), incremental=False)
    res = project.query({"user_id": [1, 5]}, ["user.half", "user.hour"], now=at(2, 13))
    assert res.rows == [{"user.half": 1.0, "user.hour": 13}, {"user.half": None, "user.hour": 13}]
    table = project.training_set(pl.DataFrame({"user_id": [1, 5], "timestamp": [at(2, 13)] * 2}), ["user.half", "user.hour"])
    assert table.column("user.half").to_pylist() == [1.0, None]
    assert table.column("user.hour").to_pylist() == [13, 13]
    project.close()


def test_bad_keys_are_rejected_clearly(small_project):
    with pytest.raises(EntityKeyError, match="'user_id'"):
        small_project.query({"customer": [1]}, ["user.limit"], now=at(7))
    with pytest.raises(EntityKeyError, match="entity 1"):
        small_project.query({"user_id": [1, "two"]}, ["user.limit"], now=at(7))
    with pytest.raises(EntityKeyError, match="null"):
        small_project.query({"user_id": [None]}, ["user.limit"], now=at(7))


def test_naive_query_time_is_rejected(small_project):
    with pytest.raises(pt.ParityError, match="no time zone"):
        small_project.query({"user_id": [1]}, ["user.limit"], now=dt.datetime(2024, 1, 7))
