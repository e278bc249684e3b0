"""Parity (DESIGN.md, semantics 3, 6, 7 and 8) on random data.

For a random query time t, the online answer at t — after materializing what is visible at t into a
fresh online store — equals the training-set row at t, feature by feature, bit for bit: every dtype
(Float64 with NaN, ±inf and -0.0 included), ties and exact edges of event time, late and null
created times, nulls in values, max_age hit exactly, both as_of modes, Python resolvers that use
``now`` and other features (through a relationship too), and keys that never appear.

Both answers are also checked against a plain loop-by-loop reference of the as-of rule, so the two
paths cannot agree on a wrong value; the served values, logged, replay through ``parity skew`` with
no mismatch (the log's JSON and the replay keep every bit). A second property checks that incremental materialization
(at t1 < t, then at t) serves exactly what a full materialization at t serves.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from typing import Annotated

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import parity as pt
from parity.errors import DataError
from parity.semantics.values import same_value
from tests.support import assert_same_table

UTC = dt.UTC
BASE = dt.datetime(2024, 3, 1, tzinfo=UTC)
INT64 = st.integers(-(2**63), 2**63 - 1)


def at_minute(m: int) -> dt.datetime:
    return BASE + dt.timedelta(minutes=m)


# Event times come from a small set: many ties, and query times land exactly on them.
EVENT_MINUTES = [0, 60, 90, 120, 180, 240]
EVENTS = st.sampled_from(EVENT_MINUTES).map(at_minute)
QUERY_TIMES = st.one_of(
    EVENTS,
    st.integers(-30, 330).map(at_minute),
    # one microsecond either side of an event time: max_age edges must hold to the microsecond
    st.tuples(EVENTS, st.sampled_from([-1, 1])).map(lambda p: p[0] + dt.timedelta(microseconds=p[1])),
)
# A user row's event time: sometimes null (never visible, on any path).
USER_EVENTS = st.one_of(EVENTS, EVENTS, EVENTS, st.none())
# Created time relative to the event: null, earlier, equal, later (a late-arriving row).
CREATED_OFFSET = st.one_of(st.none(), st.sampled_from([-60, 0, 30, 60, 120, 200]))
FLOATS = st.one_of(
    st.none(), st.floats(width=64), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -1.5])
)
STAMPS = st.integers(-(2**54), 2**54).map(lambda us: dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=us))
DATES = st.integers(-150_000, 150_000).map(lambda d: dt.date(1970, 1, 1) + dt.timedelta(days=d))

USER_IDS = [1, 2, 3, 4]  # keys that appear in the data
ORDER_IDS = ["o1", "o2", "o3"]
# One spine row / request row per key, unknown keys (user 5, 6; order o4-o6) and a duplicate included.
SPINE_USERS = [1, 2, 3, 4, 5, 6, 2]
SPINE_ORDERS = ["o1", "o2", "o3", "o4", "o5", "o6", "o1"]


def user_rows(ids: list[int]) -> st.SearchStrategy[dict]:  # type: ignore[type-arg]
    return st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(ids),
            "ev": USER_EVENTS,
            "cr": CREATED_OFFSET,
            "n": st.one_of(st.none(), INT64, st.sampled_from([0, -1, 2**63 - 1, -(2**63)])),
            "x": FLOATS,
            "b": st.one_of(st.none(), st.booleans()),
            "s": st.one_of(st.none(), st.text(max_size=4)),
            "at": st.one_of(st.none(), STAMPS),
            "d": st.one_of(st.none(), DATES),
            "xs": st.one_of(st.none(), st.lists(st.one_of(st.none(), INT64), max_size=3)),
        }
    )


order_row = st.fixed_dictionaries(
    {
        "order_id": st.sampled_from(ORDER_IDS),
        "ev": EVENTS,
        "user_id": st.one_of(st.none(), st.sampled_from(SPINE_USERS)),  # 5, 6: users without data
        "amount": FLOATS,
    }
)

USER_SCHEMA = {
    "user_id": pl.Int64, "ev": pl.Datetime("us", "UTC"), "cr": pl.Datetime("us", "UTC"), "n": pl.Int64,
    "x": pl.Float64, "b": pl.Boolean, "s": pl.String, "at": pl.Datetime("us", "UTC"), "d": pl.Date,
    "xs": pl.List(pl.Int64), "rid": pl.Int64,
}
ORDER_SCHEMA = {"order_id": pl.String, "ev": pl.Datetime("us", "UTC"), "user_id": pl.Int64, "amount": pl.Float64}
# rid is distinct per source row (its position), so choosing the wrong row of a tie is visible.
USER_FEATURES = ["n", "x", "b", "s", "at", "d", "xs", "rid"]
DERIVED = ["n_half", "xs_rev", "seen", "day", "flag", "tag"]
USER_REFS = [f"user.{f}" for f in [*USER_FEATURES, "mix", *DERIVED]]
ORDER_REFS = ["order.user_id", "order.amount", "order.hours_since_at",
              *(f"order.user.{f}" for f in [*USER_FEATURES, "mix", *DERIVED])]
REFS = [*USER_REFS, *ORDER_REFS]


# --- the project under test -------------------------------------------------------------------


def definitions(tmp: str, as_of: str, max_age: dt.timedelta | None, s_max_age: dt.timedelta | None,
                order_max_age: dt.timedelta | None):  # type: ignore[no-untyped-def]
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    order = pt.Entity("order", keys={"order_id": pt.String}, relationships={"user": pt.HasOne(user, via="user_id")})
    users = pt.FeatureView(
        "users", entity=user, max_age=max_age,
        source=pt.ParquetSource("users", path=os.path.join(tmp, "users.parquet"), event_time="ev",
                                created_time="cr", as_of=as_of),
        features=[pt.Feature("n", pt.Int64), pt.Feature("x", pt.Float64), pt.Feature("b", pt.Bool),
                  pt.Feature("s", pt.String, max_age=s_max_age), pt.Feature("at", pt.Timestamp),
                  pt.Feature("d", pt.Date), pt.Feature("xs", pt.List(pt.Int64)), pt.Feature("rid", pt.Int64)],
    )
    orders = pt.FeatureView(
        "orders", entity=order, max_age=order_max_age,
        source=pt.ParquetSource("orders", path=os.path.join(tmp, "orders.parquet"), event_time="ev"),
        features=[pt.Feature("user_id", pt.Int64), pt.Feature("amount", pt.Float64)],
    )

    @pt.resolver(entity=user, outputs=pt.Feature("mix", pt.Float64))
    def mix(x: float | None, at: dt.datetime | None, now: dt.datetime) -> float | None:
        if at is None:
            return x
        hours = (now - at).total_seconds() / 3600
        return hours if x is None else hours * x  # keeps the sign of -0.0, turns inf * 0 into NaN

    @pt.resolver(entity=user, outputs=[pt.Feature("n_half", pt.Int64), pt.Feature("xs_rev", pt.List(pt.Int64)),
                                       pt.Feature("seen", pt.Timestamp), pt.Feature("day", pt.Date),
                                       pt.Feature("flag", pt.Bool), pt.Feature("tag", pt.String)])
    def derived(
        n: int | None, xs: list[int] | None, at: dt.datetime | None, d: dt.date | None, b: bool | None,
        s: str | None, now: dt.datetime,
    ) -> tuple[int | None, list[int] | None, dt.datetime | None, dt.date | None, bool | None, str | None]:
        return (
            None if n is None else n // 2,
            None if xs is None else xs[::-1],
            None if at is None else max(at, now),  # a naive datetime in either path would raise here
            None if d is None else d - dt.timedelta(days=1),
            None if b is None else not b,
            None if s is None else f"{s}|{now.isoformat()}",
        )

    @pt.resolver(entity=order, outputs=pt.Feature("hours_since_at", pt.Float64))
    def hours_since_at(
        at: Annotated[dt.datetime | None, "user.at"], user_mix: Annotated[float | None, "user.mix"],
        amount: float | None, now: dt.datetime,
    ) -> float | None:
        if at is None:
            return amount if user_mix is None else user_mix
        return (now - at).total_seconds() / 3600 + (0.0 if amount is None else amount)

    return [user, order, users, orders, mix, derived, hours_since_at], (mix, derived, hours_since_at)


def write_sources(tmp: str, users: list[dict], orders: list[dict]) -> None:  # type: ignore[type-arg]
    rows = [{**u, "cr": None if u["cr"] is None else (u["ev"] or BASE) + dt.timedelta(minutes=u["cr"])} for u in users]
    pl.DataFrame(rows, schema=USER_SCHEMA, orient="row").write_parquet(os.path.join(tmp, "users.parquet"))
    pl.DataFrame(orders, schema=ORDER_SCHEMA, orient="row").write_parquet(os.path.join(tmp, "orders.parquet"))


def spine(t: dt.datetime) -> pl.DataFrame:
    return pl.DataFrame({"order_id": SPINE_ORDERS, "user_id": SPINE_USERS, "timestamp": [t] * len(SPINE_USERS)},
                        schema={"order_id": pl.String, "user_id": pl.Int64, "timestamp": pl.Datetime("us", "UTC")})


# --- the reference: the rules written out, loop by loop ---------------------------------------


def choose(rows: list[dict], key_name: str, key: object, t: dt.datetime, uses_created: bool) -> dict | None:  # type: ignore[type-arg]
    best = None
    for position, row in enumerate(rows):
        if row[key_name] != key or row["ev"] is None or row["ev"] > t:  # no event time: never visible
            continue
        created = row["ev"] if row.get("cr") is None else row["ev"] + dt.timedelta(minutes=row["cr"])
        if uses_created and created > t:
            continue
        order = (row["ev"], created, position)
        if best is None or order > best[0]:
            best = (order, row)
    return None if best is None else best[1]


def looked_up(row: dict | None, feature: str, t: dt.datetime, max_age: dt.timedelta | None):  # type: ignore[type-arg,no-untyped-def]
    """(status, value, event time) of one source-backed feature."""
    if row is None:
        return "missing", None, None
    if max_age is not None and t - row["ev"] > max_age:
        return "expired", None, row["ev"]
    return "present", row[feature], row["ev"]


def expected_user(users, key, t, as_of, max_ages, resolvers):  # type: ignore[no-untyped-def]
    """{feature: (status, value, event)} for user ``key`` at t (key None: reached through a null link)."""
    mix, derived, _ = resolvers
    row = None if key is None else choose(users, "user_id", key, t, as_of == "visible")
    out = {f: looked_up(row, f, t, max_ages[f]) for f in USER_FEATURES}
    v = {f: out[f][1] for f in USER_FEATURES}
    out["mix"] = ("present", mix.fn(x=v["x"], at=v["at"], now=t), None)
    for name, value in zip(DERIVED, derived.fn(n=v["n"], xs=v["xs"], at=v["at"], d=v["d"], b=v["b"], s=v["s"], now=t)):
        out[name] = ("present", value, None)
    return out


def expected_row(users, orders, user_key, order_key, t, as_of, max_ages, order_max_age, resolvers):  # type: ignore[no-untyped-def]
    want = {f"user.{f}": e for f, e in expected_user(users, user_key, t, as_of, max_ages, resolvers).items()}
    order_row_ = choose(orders, "order_id", order_key, t, uses_created=False)
    for f in ("user_id", "amount"):
        want[f"order.{f}"] = looked_up(order_row_, f, t, order_max_age)
    linked = expected_user(users, want["order.user_id"][1], t, as_of, max_ages, resolvers)
    for f, e in linked.items():
        want[f"order.user.{f}"] = e
    hours = resolvers[2].fn(at=linked["at"][1], user_mix=linked["mix"][1], amount=want["order.amount"][1], now=t)
    want["order.hours_since_at"] = ("present", hours, None)
    return want


# --- comparison -----------------------------------------------------------------------------


def same(a: object, b: object) -> bool:
    """Bit for bit: same type and value, -0.0 is not 0.0, NaN is NaN, timestamps in UTC."""
    if not same_value(a, b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, dt.datetime):
        return a.utcoffset() == dt.timedelta(0) and b.utcoffset() == dt.timedelta(0)  # type: ignore[union-attr]
    return True


def check_row(i: int, offline: dict, online_values: dict, online_details, want: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    for ref in REFS:
        status, value, event = want[ref]
        off, on, detail = offline[ref], online_values[ref], online_details[ref]
        # Parity: online equals the training row, bit for bit.
        assert same(on, off), f"row {i} {ref}: online {on!r} != offline {off!r}"
        # And both equal the reference (so they cannot agree on a wrong value).
        assert same(off, value), f"row {i} {ref}: offline {off!r} != reference {value!r}"
        assert same(detail.value, on), f"row {i} {ref}: details {detail.value!r} != rows {on!r}"
        assert detail.status == status, f"row {i} {ref}: status {detail.status!r}, reference says {status!r}"
        # The event time of the row served (none for a resolver output, which has no row of its own).
        assert detail.event_time == event, f"row {i} {ref}: event time {detail.event_time} != {event}"


# --- strategies for max_age ------------------------------------------------------------------

MAX_AGE = st.one_of(
    st.just(("none", None)),
    st.sampled_from([0, 30, 60, 120]).map(lambda m: ("fixed", m)),
    # exactly t − (some event time ≤ t): a row of that event is still valid; or one microsecond less,
    # so that row is expired by exactly one microsecond
    st.tuples(st.sampled_from(["edge", "past_edge"]), st.integers(0, 50)),
)


def resolve_max_age(spec: tuple[str, int | None], t: dt.datetime, events: list[dt.datetime]) -> dt.timedelta | None:
    kind, n = spec
    if kind == "none":
        return None
    if kind == "fixed":
        return dt.timedelta(minutes=n)  # type: ignore[arg-type]
    past = sorted({e for e in events if e is not None and e <= t})
    if not past:
        return dt.timedelta(0)
    age = t - past[n % len(past)]  # type: ignore[operator]
    return max(age - dt.timedelta(microseconds=1), dt.timedelta(0)) if kind == "past_edge" else age


def setup(tmp, users, orders, t, as_of, age_spec, s_age_spec, order_age_spec):  # type: ignore[no-untyped-def]
    write_sources(tmp, users, orders)
    events = [u["ev"] for u in users]
    max_age = resolve_max_age(age_spec, t, events)
    s_max_age = resolve_max_age(s_age_spec, t, events)
    order_max_age = resolve_max_age(order_age_spec, t, [o["ev"] for o in orders])
    defs, resolvers = definitions(tmp, as_of, max_age, s_max_age, order_max_age)
    max_ages = {f: max_age for f in USER_FEATURES} | {"s": s_max_age if s_max_age is not None else max_age}
    return defs, resolvers, max_ages, order_max_age


def project_at(tmp: str, defs: list[object], store: str, log_rate: float = 0.0) -> pt.Project:
    return pt.Project.from_definitions(defs, root=tmp, online_store_path=os.path.join(tmp, store),
                                       registry_path=os.path.join(tmp, "registry.db"), feature_log_sample_rate=log_rate)


def training_rows(project: pt.Project, t: dt.datetime) -> list[dict]:  # type: ignore[type-arg]
    table = project.training_set(spine(t), REFS, timestamp_column="timestamp")
    # the partitioned engine, through the relationship too: the same table, statuses included
    statuses = project.training_set(spine(t), REFS, timestamp_column="timestamp", with_status=True)
    for partitions in (2, 3):
        assert_same_table(project.training_set(spine(t), REFS, timestamp_column="timestamp", with_status=True,
                                               partitions=partitions), statuses, f"{partitions} partitions")
    assert table.num_rows == len(SPINE_USERS)
    assert table.column("order_id").to_pylist() == SPINE_ORDERS
    return table.to_pylist()


def user(user_id: int, ev: int, cr: int | None, **values: object) -> dict:  # type: ignore[type-arg]
    blank = dict.fromkeys(USER_FEATURES)
    return {"user_id": user_id, "ev": at_minute(ev), "cr": cr, **blank, **values}


NO_AGE = ("none", None)

COMMON = {
    "users": st.lists(user_rows(USER_IDS), max_size=16),
    "orders": st.lists(order_row, max_size=8),
    "as_of": st.sampled_from(["visible", "event_time"]),
    "age_spec": MAX_AGE,
    "s_age_spec": MAX_AGE,
    "order_age_spec": MAX_AGE,
}


@settings(max_examples=80, deadline=None)
@given(t=QUERY_TIMES, early=st.integers(1, 300), **COMMON)
# A full tie of (event, created): the later row wins, and -0.0 must not come back as 0.0. The value
# is exactly max_age old at t, so it is still valid.
@example(users=[user(1, 60, 0, x=0.0, s="first"), user(1, 60, 0, x=-0.0, s="second")],
         orders=[{"order_id": "o1", "ev": at_minute(0), "user_id": 1, "amount": math.nan}],
         t=at_minute(120), as_of="visible", age_spec=("fixed", 60), s_age_spec=NO_AGE, order_age_spec=NO_AGE, early=45)
# One microsecond past max_age: expired in both paths (and "expired", not "missing", online).
@example(users=[user(1, 60, None, n=5, s="x")], orders=[], t=at_minute(90) + dt.timedelta(microseconds=1),
         as_of="event_time", age_spec=("past_edge", 0), s_age_spec=("edge", 0), order_age_spec=NO_AGE, early=1)
# Asked before the stored value's time: the newer row is "future" online, never served as present.
@example(users=[user(1, 0, None, n=1), user(1, 120, 0, n=2), user(2, 60, 120, n=3)], orders=[], t=at_minute(240),
         as_of="visible", age_spec=NO_AGE, s_age_spec=NO_AGE, order_age_spec=NO_AGE, early=150)
def test_online_answer_equals_training_row(users, orders, t, as_of, age_spec, s_age_spec, order_age_spec, early):
    users = [{**u, "rid": i} for i, u in enumerate(users)]
    with tempfile.TemporaryDirectory() as tmp:
        defs, resolvers, max_ages, order_max_age = setup(tmp, users, orders, t, as_of, age_spec, s_age_spec,
                                                         order_age_spec)
        project = project_at(tmp, defs, "online.db", log_rate=1.0)
        try:
            offline = training_rows(project, t)
            # materialized whole or in key partitions: the same store, so the same answers
            project.materialize(until=t, incremental=False, partitions=1 + len(users) % 3)
            online = project.query({"order_id": SPINE_ORDERS, "user_id": SPINE_USERS}, REFS, now=t, with_status=True)
            assert len(online.rows) == len(offline)
            for i, (u, o) in enumerate(zip(SPINE_USERS, SPINE_ORDERS)):
                want = expected_row(users, orders, u, o, t, as_of, max_ages, order_max_age, resolvers)
                check_row(i, offline[i], online.rows[i], online.details[i], want)
            # the served-value log replayed through the offline engine (parity skew): no skew
            log = project.feature_log()
            assert log is not None
            log.close()  # the part is closed and readable; later queries are not logged
            skew = project.skew(sample=None)
            assert skew.rows == len(SPINE_USERS) and skew.mismatches == 0, "\n".join(skew.lines())
            assert {f.compared for f in skew.features.values()} == {len(SPINE_USERS)}
            check_earlier(project, users, orders, t, t - dt.timedelta(minutes=early), as_of)
        finally:
            project.close()


DIRECT_REFS = [*(f"user.{f}" for f in USER_FEATURES), "order.user_id", "order.amount"]


def visible_instant(row: dict, uses_created: bool) -> dt.datetime:  # type: ignore[type-arg]
    created = row["ev"] if row.get("cr") is None else row["ev"] + dt.timedelta(minutes=row["cr"])
    return max(row["ev"], created) if uses_created else row["ev"]


def check_earlier(project: pt.Project, users: list[dict], orders: list[dict], t: dt.datetime,  # type: ignore[type-arg]
                  early: dt.datetime, as_of: str) -> None:
    """The store holds what was visible at t; asked at an earlier time it serves a value only if it
    was visible then (and then it is the training-set value at that time), else says "future"."""
    past = training_rows(project, early)
    then = project.query({"order_id": SPINE_ORDERS, "user_id": SPINE_USERS}, DIRECT_REFS, now=early, with_status=True)
    for i, (u, o) in enumerate(zip(SPINE_USERS, SPINE_ORDERS)):
        held = {"user": choose(users, "user_id", u, t, as_of == "visible"),
                "order": choose(orders, "order_id", o, t, uses_created=False)}
        for ref in DIRECT_REFS:
            entity = ref.split(".")[0]
            detail = (then.details or [])[i][ref]
            row = held[entity]
            if row is not None and visible_instant(row, entity == "user" and as_of == "visible") > early:
                assert (detail.status, detail.value) == ("future", None), (i, ref, detail)
            else:
                assert detail.status != "future", (i, ref, detail)
                assert same(detail.value, past[i][ref]), f"row {i} {ref} at {early}: {detail.value!r} != {past[i][ref]!r}"


# Instants at which rows become visible (event + created offset), so t1 and t fall on and between them.
INSTANTS = st.one_of(st.sampled_from(sorted({e + o for e in EVENT_MINUTES for o in (0, 30, 60, 120, 200)})),
                     st.integers(-30, 480)).map(at_minute)


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(INSTANTS, min_size=2, max_size=2, unique=True).map(sorted),
    # Few keys and several rows each, so late rows with older event times arrive between t1 and t
    # and must not overwrite the newer value already served (monotonic writes).
    **{**COMMON, "users": st.lists(user_rows([1, 2]), min_size=2, max_size=16)},
)
# Served at t1: the row of event 60. Arriving between t1 and t: an older event (0) created late.
@example(users=[user(1, 60, 0, x=1.0, s="newer"), user(1, 0, 200, x=2.0, s="late but older")], orders=[],
         times=[at_minute(90), at_minute(240)], as_of="visible", age_spec=NO_AGE, s_age_spec=NO_AGE,
         order_age_spec=NO_AGE)
def test_incremental_materialization_equals_full(users, orders, times, as_of, age_spec, s_age_spec, order_age_spec):
    users = [{**u, "rid": i} for i, u in enumerate(users)]
    t1, t = times  # t1 < t
    with tempfile.TemporaryDirectory() as tmp:
        defs, resolvers, max_ages, order_max_age = setup(tmp, users, orders, t, as_of, age_spec, s_age_spec,
                                                         order_age_spec)
        entities = {"order_id": SPINE_ORDERS, "user_id": SPINE_USERS}
        stepwise, full = project_at(tmp, defs, "stepwise.db"), project_at(tmp, defs, "full.db")
        try:
            stepwise.materialize(until=t1, incremental=True)
            stepwise.materialize(until=t, incremental=True)
            full.materialize(until=t, incremental=False)
            a = stepwise.query(entities, REFS, now=t, with_status=True)
            b = full.query(entities, REFS, now=t, with_status=True)
            offline = training_rows(full, t)
            for i, (u, o) in enumerate(zip(SPINE_USERS, SPINE_ORDERS)):
                for ref in REFS:
                    da, db = a.details[i][ref], b.details[i][ref]
                    assert same(da.value, db.value), f"row {i} {ref}: incremental {da.value!r} != full {db.value!r}"
                    assert (da.status, da.event_time) == (db.status, db.event_time), (i, ref, da, db)
                want = expected_row(users, orders, u, o, t, as_of, max_ages, order_max_age, resolvers)
                check_row(i, offline[i], a.rows[i], a.details[i], want)
        finally:
            stepwise.close()
            full.close()


# --- a resolver output its dtype cannot hold is served by neither path -----------------------

BAD_OUTPUTS = [
    (pt.Int64, 2**63),  # one past the Int64 range: offline would hold null, online the big int
    (pt.Int64, -(2**63) - 1),
    (pt.List(pt.Int64), [1, 2**64]),
    (pt.Float64, 10**400),  # no float can hold it
    (pt.String, "lone \ud800 surrogate"),  # Arrow (UTF-8) cannot hold it
]


@pytest.mark.parametrize(("dtype", "bad"), BAD_OUTPUTS, ids=lambda v: repr(v)[:24])
def test_resolver_output_outside_its_dtype_is_served_by_neither_path(tmp_path, dtype, bad):
    pl.DataFrame({"user_id": [1, 2], "ev": [BASE, BASE], "n": [1, 2]},
                 schema={"user_id": pl.Int64, "ev": pl.Datetime("us", "UTC"), "n": pl.Int64}).write_parquet(
        tmp_path / "u.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("u", entity=user, features=[pt.Feature("n", pt.Int64)],
                          source=pt.ParquetSource("u", path="u.parquet", event_time="ev"))
    good = {"Int64": 7, "Float64": 7.5, "String": "seven", "List": [7]}[dtype.name]

    @pt.resolver(entity=user, outputs=pt.Feature("out", dtype))
    def out(n: int | None):  # type: ignore[no-untyped-def]
        return bad if n == 1 else good

    project = pt.Project.from_definitions([user, view, out], root=str(tmp_path),
                                          online_store_path=str(tmp_path / "o.db"), registry_path=str(tmp_path / "r.db"))
    t = BASE + dt.timedelta(hours=1)
    try:
        with pytest.raises(DataError) as info:
            project.training_set(pl.DataFrame({"user_id": [2, 1], "timestamp": [t, t]}), ["user.out"])
        message = str(info.value)
        assert "resolver 'out'" in message and "spine row 1" in message and "feature 'out'" in message
        project.materialize(until=t, incremental=False)
        res = project.query({"user_id": [1, 2]}, ["user.out"], now=t, with_status=True)
        bad_row, good_row = res.details[0]["user.out"], res.details[1]["user.out"]
        assert (bad_row.status, bad_row.value) == ("error", None), bad_row
        assert "resolver 'out'" in (bad_row.error or "")
        assert (good_row.status, good_row.value) == ("present", good), good_row
        # The well-formed value itself still goes through both paths alike.
        table = project.training_set(pl.DataFrame({"user_id": [2], "timestamp": [t]}), ["user.out"])
        assert same_value(table.column("user.out").to_pylist()[0], good)
    finally:
        project.close()
