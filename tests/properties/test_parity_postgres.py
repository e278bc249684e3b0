"""online == offline with PostgreSQL as the source and SQLite or Redis as the online store: the
training set (an ADBC scan, as-of joined in Polars) equals, value for value, both the answer looked
up in PostgreSQL at request time and the answer served from the online store after materializing at t."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parity as pt
from parity.semantics.values import same_value
from tests.support_services import POSTGRES_URL, REDIS_URL, require_service

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
HOURS = st.integers(0, 12).map(lambda h: BASE + dt.timedelta(hours=h))

row = st.tuples(
    st.integers(1, 4),  # user_id
    HOURS,  # event time
    st.one_of(st.none(), st.integers(0, 6).map(lambda d: dt.timedelta(hours=d))),  # ingestion delay
    st.one_of(st.none(), st.sampled_from(["DE", "FR", "", "ü"])),
    st.one_of(st.none(), st.floats(allow_nan=False, width=64), st.just(-0.0)),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
)



@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, max_size=25), times=st.lists(HOURS, min_size=1, max_size=4),
       as_of=st.sampled_from(["visible", "event_time"]), max_age_h=st.sampled_from([None, 0, 2, 5]),
       store=st.sampled_from(["sqlite", "redis"]))
def test_postgres_source_online_equals_offline(rows, times, as_of, max_age_h, store):
    require_service("postgresql", "127.0.0.1", 5432)
    if store == "redis":
        require_service("redis", "127.0.0.1", 6379)
    import psycopg

    table = f"parity_prop_{uuid.uuid4().hex[:10]}"
    os.environ["PARITY_PROP_PG"] = POSTGRES_URL
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f'CREATE TABLE "{table}" (id bigserial, user_id bigint, ev timestamptz, cr timestamptz, '
                    "country text, score double precision, n bigint)")
        with con.cursor() as cur:
            cur.executemany(f'INSERT INTO "{table}" (user_id, ev, cr, country, score, n) VALUES (%s, %s, %s, %s, %s, %s)',
                            [(u, e, None if d is None else e + d, c, s, n) for u, e, d, c, s, n in rows])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _check(tmp, table, times, as_of, None if max_age_h is None else dt.timedelta(hours=max_age_h), store)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
            con.execute(f'DROP TABLE "{table}"')


def _store(tmp: str, store: str, name: str) -> dict[str, str]:
    if store == "redis":
        return {"online_store_type": "redis", "online_store_url": REDIS_URL, "online_store_namespace": f"prop-{uuid.uuid4().hex}"}
    return {"online_store_path": os.path.join(tmp, f"{name}.db")}


def _check(tmp: str, table: str, times, as_of, max_age, store) -> None:  # type: ignore[no-untyped-def]
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    source = pt.PostgresSource("pg", table=table, connection="env:PARITY_PROP_PG", event_time="ev",
                               created_time="cr", as_of=as_of, sequence="id")
    # "row" (the serial id) is distinct per row: a wrong choice among tied rows shows
    features = [pt.Feature("country", pt.String), pt.Feature("score", pt.Float64), pt.Feature("n", pt.Int64),
                pt.Feature("row", pt.Int64, column="id")]
    live = pt.FeatureView("v", entity=user, source=source, features=features, max_age=max_age,
                          max_staleness=dt.timedelta(0))
    stored = pt.FeatureView("v", entity=user, source=source, features=features, max_age=max_age)
    refs = ["user.country", "user.score", "user.n", "user.row"]
    keys = [1, 2, 3, 4, 5]  # 5 never appears
    request_time = pt.Project.from_definitions([user, live], root=tmp, **_store(tmp, store, "live"))
    try:
        for t in times:
            spine = pl.DataFrame({"user_id": keys, "timestamp": [t] * len(keys)})
            offline = request_time.training_set(spine, refs).to_pylist()
            online = request_time.query({"user_id": keys}, refs, now=t).rows
            materialized = pt.Project.from_definitions([user, stored], root=tmp, **_store(tmp, store, f"m{t.hour}"))
            materialized.materialize(until=t, incremental=False)
            served = materialized.query({"user_id": keys}, refs, now=t).rows
            materialized.close()
            for i, key in enumerate(keys):
                for ref in refs:
                    assert same_value(online[i][ref], offline[i][ref]), ("request-time", key, t, ref, online[i][ref], offline[i][ref])
                    assert same_value(served[i][ref], offline[i][ref]), ("materialized", key, t, ref, served[i][ref], offline[i][ref])
    finally:
        request_time.close()
