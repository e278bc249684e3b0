"""One suite over every online store: exact round trips, monotonic writes, watermarks, sync marks."""

from __future__ import annotations

import math
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity.connectors.redis_online import RedisOnlineStore
from parity.connectors.sqlite_online import SQLiteOnlineStore
from parity.ports.secret import Secret
from tests.support_services import REDIS_URL, require_service

STORES = ["sqlite", "redis"]


def make_store(kind: str, tmp_path):  # type: ignore[no-untyped-def]
    if kind == "sqlite":
        return SQLiteOnlineStore(str(tmp_path / f"{uuid.uuid4().hex}.db"))
    require_service("redis", "127.0.0.1", 6379)
    return RedisOnlineStore(Secret(REDIS_URL, REDIS_URL), namespace=f"test-{uuid.uuid4().hex}")


@pytest.fixture(params=STORES)
def store(request, tmp_path):  # type: ignore[no-untyped-def]
    made = make_store(request.param, tmp_path)
    yield made
    if request.param == "redis":
        made.drop()
    made.close()


def test_unknown_keys_read_as_none_in_order(store):
    store.ensure_table("t")
    store.write("t", [((2,), (10, 10, ("b",)))])
    assert store.read("t", [(1,), (2,), (3,)]) == [None, (10, 10, ("b",)), None]
    assert store.read("never_written", [(1,)]) == [None]


def test_round_trip_is_exact(store):
    values = (2**63 - 1, -(2**63), 0.1, -0.0, math.inf, "ünï€😀", True, None, [1, -2], ["a"], 1_700_000_000_000_000)
    store.write("t", [(("k", 7), (5, 6, values))])
    (held,) = store.read("t", [("k", 7)])
    assert held is not None and held[:2] == (5, 6)
    for got, want in zip(held[2], values):
        assert repr(got) == repr(want)
    nan = store.write("t", [(("nan", 1), (5, 6, (math.nan,)))])
    assert nan == 1 and math.isnan(store.read("t", [("nan", 1)])[0][2][0])


def test_monotonic_writes(store):
    assert store.write("t", [((1,), (100, 100, ("new",)))]) == 1
    assert store.write("t", [((1,), (90, 200, ("older event",)))]) == 0  # late row: kept out
    assert store.write("t", [((1,), (100, 99, ("older created",)))]) == 0
    assert store.read("t", [(1,)])[0][2] == ("new",)
    assert store.write("t", [((1,), (100, 100, ("tie, later write",)))]) == 1  # a full tie: the later write wins
    assert store.write("t", [((1,), (100, 150, ("newer created",)))]) == 1
    assert store.read("t", [(1,)])[0] == (100, 150, ("newer created",))
    # within one batch too
    assert store.write("t", [((2,), (5, 5, ("a",))), ((2,), (3, 3, ("b",))), ((2,), (7, 7, ("c",)))]) == 2
    assert store.read("t", [(2,)])[0][2] == ("c",)


def test_watermarks_never_move_back(store):
    assert store.get_watermark("t") is None
    store.set_watermark("t", 50)
    store.set_watermark("t", 40)
    assert store.get_watermark("t") == 50
    store.set_watermark("t", 60)
    assert store.get_watermark("t") == 60


def test_sync_marks_combine_with_the_watermark(store):
    assert store.read_synced("t", [(1,), (2,)]) == [None, None]
    store.mark_synced("t", [(1,)], 30)
    store.mark_synced("t", [(1,)], 20)  # never backwards
    assert store.read_synced("t", [(1,), (2,)]) == [30, None]
    store.set_watermark("t", 25)
    assert store.read_synced("t", [(1,), (2,)]) == [30, 25]


def test_tables(store):
    assert not store.has_table("t")
    store.ensure_table("t")
    assert store.has_table("t")


def test_many_keys_in_one_read_keep_order(store):
    rows = [((i,), (i, i, (i * 2,))) for i in range(5000)]
    assert store.write("t", rows) == 5000
    keys = [(i,) for i in range(4999, -1, -7)] + [(-1,)]
    assert store.read("t", keys) == [(k[0], k[0], (k[0] * 2,)) for k in keys[:-1]] + [None]


write_batch = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 4), st.integers(-(2**63), 2**63 - 1)),
                       max_size=8)


@pytest.mark.parametrize("kind", STORES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(write_batch, max_size=5))
def test_held_value_is_the_newest_write(kind, tmp_path, batches):
    store = make_store(kind, tmp_path)
    model: dict[int, tuple[int, int, int]] = {}
    try:
        for batch in batches:
            store.write("t", [((k,), (ev, cr, (v,))) for k, ev, cr, v in batch])
            for k, ev, cr, v in batch:
                held = model.get(k)
                if held is None or (ev, cr) >= held[:2]:
                    model[k] = (ev, cr, v)
        got = store.read("t", [(k,) for k in range(4)])
        assert got == [None if k not in model else (model[k][0], model[k][1], (model[k][2],)) for k in range(4)]
    finally:
        if kind == "redis":
            store.drop()
        store.close()


def test_redis_drop_removes_its_namespace_and_nothing_else(tmp_path):
    mine, other = make_store("redis", tmp_path), make_store("redis", tmp_path)
    try:
        mine.write("t", [((1,), (5, 5, ("a",)))])
        mine.set_watermark("t", 5)
        mine.mark_synced("t", [(1,)], 5)
        other.write("t", [((1,), (5, 5, ("kept",)))])
        assert mine.drop() == 4  # the value, the watermark hash, the sync hash, the table set
        assert mine.read("t", [(1,)]) == [None] and mine.get_watermark("t") is None
        assert not mine.has_table("t")
        assert other.read("t", [(1,)])[0][2] == ("kept",)
    finally:
        other.drop()
        mine.close()
        other.close()


def test_an_awaited_read_answers_what_a_read_answers(tmp_path):
    """The store that offers ``aread`` (Redis: its reads wait on the network) answers it exactly
    as ``read``, NaN and misses included."""
    import asyncio

    store = make_store("redis", tmp_path)
    store.write("t", [((1,), (5, 6, (float("nan"), "x", None))), ((2,), (7, 7, (1.5, "y", 3)))])
    keys = [(2,), (9,), (1,), (2,)]

    async def both() -> tuple[object, object]:
        return await store.aread("t", keys), await store.aread("t", [])

    got, empty = asyncio.run(both())
    assert repr(got) == repr(store.read("t", keys)) and empty == []
    store.drop()
    store.close()


def test_an_awaited_read_of_an_unreachable_redis_is_a_store_error():
    import asyncio

    from parity.errors import StoreError

    down = RedisOnlineStore(Secret("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0"), namespace="x", timeout=0.2)
    with pytest.raises(StoreError, match="Redis online store"):
        asyncio.run(down.aread("t", [(1,)]))
    down.close()
