"""Request-time resolution from a real PostgreSQL: freshness by max_staleness, write-back, and
concurrency of independent steps."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

import parity as pt
from tests.integration.mysql_fixtures import mysql_table  # noqa: F401 - fixture
from tests.integration.pg_fixtures import pg_table  # noqa: F401 - fixture
from tests.support import at


def _project(tmp_path, table: str, staleness: dt.timedelta, extra=(), user=None, db="postgres"):  # type: ignore[no-untyped-def]
    user = user or pt.Entity("user", keys={"user_id": pt.Int64})
    if db == "postgres":
        source = pt.PostgresSource("users_db", table=table, connection="env:PARITY_IT_PG", event_time="updated_at",
                                   created_time="ingested_at", sequence="id")
    else:
        source = pt.MySQLSource("users_db", table=table, connection="env:PARITY_IT_MYSQL", event_time="updated_at",
                                created_time="ingested_at", sequence="id", timezone="UTC")
    view = pt.FeatureView("profile", entity=user, source=source, max_staleness=staleness, timeout=2.0,
                          max_age=dt.timedelta(days=3),
                          features=[pt.Feature("country", pt.String, default="??"), pt.Feature("score", pt.Float64)])
    return pt.Project.from_definitions([user, view, *extra], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"))


@pytest.mark.parametrize("db", ["postgres", "mysql"])
def test_lookup_at_request_time_follows_the_as_of_rule(tmp_path, db, request):
    table = request.getfixturevalue("pg_table" if db == "postgres" else "mysql_table")
    table.insert([(1, at(1), at(1), "DE", 1.0), (1, at(3), at(6), "FR", 2.0), (2, at(2), None, "US", 3.0),
                  (1, at(5), at(5), None, 4.0), (1, at(5), at(5), "AT", 5.0)])
    project = _project(tmp_path, table.name, dt.timedelta(0), db=db)
    spine = {"user_id": [1, 1, 1, 2, 3]}
    times = [at(2), at(4), at(7), at(4), at(4)]
    for i, t in enumerate(times):
        online = project.query({"user_id": [spine["user_id"][i]]}, ["user.country", "user.score"], now=t, with_status=True)
        import polars as pl

        offline = project.training_set(pl.DataFrame({"user_id": [spine["user_id"][i]], "timestamp": [t]}),
                                       ["user.country", "user.score"]).to_pylist()[0]
        assert online.rows[0] == {"user.country": offline["user.country"], "user.score": offline["user.score"]}, t
    # user 2 at day 7 is 5 days old: expired, exactly as offline would null it
    late = project.query({"user_id": [2]}, ["user.score"], now=at(7), with_status=True)
    assert late.details[0]["user.score"].status == "expired"
    project.close()


def test_fresh_values_come_from_the_store_and_stale_ones_from_the_source(tmp_path, pg_table):
    pg_table.insert([(1, at(1), at(1), "DE", 1.0)])
    project = _project(tmp_path, pg_table.name, dt.timedelta(hours=1))
    assert project.query({"user_id": [1]}, ["user.country"], now=at(2)).rows[0]["user.country"] == "DE"
    store = project.online_store()
    table = project.table_of["profile"]
    assert store.read(table, [(1,)])[0] is not None  # written back
    pg_table.insert([(1, at(2), at(2), "FR", 2.0)])
    # 30 minutes later the stored value is fresh enough: no lookup, still DE
    assert project.query({"user_id": [1]}, ["user.country"], now=at(2) + dt.timedelta(minutes=30)).rows[0]["user.country"] == "DE"
    # two hours later it is stale: asked again, FR, and written back
    assert project.query({"user_id": [1]}, ["user.country"], now=at(2) + dt.timedelta(hours=2)).rows[0]["user.country"] == "FR"
    assert store.read(table, [(1,)])[0][2][0] == "FR"
    project.close()


def test_independent_steps_run_concurrently(tmp_path, pg_table):
    # Two resolvers at the same level: one waits for the other. Run one after the other, the first
    # would time out; run together, both finish. No timing threshold is involved.
    pg_table.insert([(1, at(1), at(1), "DE", 1.0)])
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    gate: dict[str, asyncio.Event] = {}

    def event() -> asyncio.Event:
        return gate.setdefault("e", asyncio.Event())

    @pt.resolver(entity=user, outputs=pt.Feature("waiter", pt.Bool), timeout=3.0)
    async def waiter(country: str | None) -> bool:
        await event().wait()
        return True

    @pt.resolver(entity=user, outputs=pt.Feature("opener", pt.Bool), timeout=3.0)
    async def opener(score: float | None) -> bool:
        await asyncio.sleep(0.05)
        event().set()
        return True

    project = _project(tmp_path, pg_table.name, dt.timedelta(0), extra=[waiter, opener], user=user)
    result = project.query({"user_id": [1]}, ["user.waiter", "user.opener"], now=at(2), with_status=True)
    assert result.rows[0] == {"user.waiter": True, "user.opener": True}, result.details
    project.close()


def test_a_value_synced_later_is_not_served_for_an_earlier_time(tmp_path, pg_table):
    pg_table.insert([(1, at(1), at(1), "DE", 1.0), (1, at(5), at(5), "FR", 2.0)])
    project = _project(tmp_path, pg_table.name, dt.timedelta(hours=1))
    assert project.query({"user_id": [1]}, ["user.country"], now=at(6)).rows[0]["user.country"] == "FR"
    # asked about day 2 afterwards: the stored FR (day 5) was not visible then; the source is asked again
    assert project.query({"user_id": [1]}, ["user.country"], now=at(2)).rows[0]["user.country"] == "DE"
    project.close()
