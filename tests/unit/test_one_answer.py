"""Regression tests for the ways one feature once had two answers (issue 6), one test per defect.

Each test failed before its fix; the comment on each says what used to happen.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
from collections.abc import Sequence

import polars as pl
import pytest

import parity as pt
from parity.errors import EntityKeyError
from parity.ports.online_store import StoredRow
from tests.support import at

UTC = dt.UTC


def _project(tmp_path, defs, **kwargs) -> pt.Project:  # type: ignore[no-untyped-def]
    return pt.Project.from_definitions(defs, root=str(tmp_path), online_store_path=str(tmp_path / "o.db"),
                                       registry_path=str(tmp_path / "r.db"), **kwargs)


def _user_view(tmp_path, rows: dict[str, list[object]], *, created: bool = False, folder: bool = False,
               key_dtype: pt.DType = pt.Int64):  # type: ignore[no-untyped-def]
    frame = pl.DataFrame(rows)
    if folder:
        os.makedirs(tmp_path / "parts", exist_ok=True)
        frame.write_parquet(tmp_path / "parts" / "part-000.parquet")
    else:
        frame.write_parquet(tmp_path / "u.parquet")
    user = pt.Entity("user", keys={"user_id": key_dtype})
    source = pt.ParquetSource("u", path="parts" if folder else "u.parquet", event_time="ts",
                              created_time="cr" if created else None)
    view = pt.FeatureView("v", entity=user, source=source, features=[pt.Feature("x", pt.String)])
    return user, view


# 1. A row with a null event time was visible offline (its created time stood in) but not after
#    materialization. It is never visible; scans count it.
def test_null_event_time_is_never_visible_and_is_counted(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": [1, 1, 2], "ts": [at(1), None, None], "cr": [at(1), at(2), at(1)],
                                       "x": ["valid", "no event time", "only null"]}, created=True)
    p = _project(tmp_path, [user, view])
    spine = pl.DataFrame({"user_id": [1, 2], "timestamp": [at(3), at(3)]})
    table = p.training_set(spine, ["user.x"])
    assert table.column("user.x").to_pylist() == ["valid", None]
    assert json.loads(table.schema.metadata[b"parity.no_event_time"]) == {"v": 2}
    (report,) = p.materialize(until=at(3), incremental=False)
    assert report.no_event_time == 2
    assert p.query({"user_id": [1, 2]}, ["user.x"], now=at(3)).column("user.x") == ["valid", None]
    p.close()


# 6. Incremental materialization of a source without a created time lost back-dated rows: a new
#    file whose rows are older than the watermark never reached the online store.
def test_back_dated_file_reaches_the_store_without_a_full_run(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": [1], "ts": [at(1)], "x": ["old"]}, folder=True)
    p = _project(tmp_path, [user, view])
    p.materialize(until=at(10))
    # a late file: user 2's row is dated day 5, before the watermark (day 10)
    pl.DataFrame({"user_id": [2, 1], "ts": [at(5), at(6)], "x": ["back-dated", "correction"]}).write_parquet(
        tmp_path / "parts" / "part-001.parquet")
    (report,) = p.materialize(until=at(11))
    assert report.full_because and "no created time" in report.full_because
    assert p.query({"user_id": [1, 2]}, ["user.x"], now=at(11)).column("user.x") == ["correction", "back-dated"]
    p.close()


# 7. A query with now before a stored value's event time served that future value as present.
def test_value_from_after_now_is_never_served_as_present(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": [1, 1, 2], "ts": [at(1), at(5), at(2)], "cr": [at(1), at(5), at(6)],
                                       "x": ["day 1", "day 5", "k2 arrived day 6"]}, created=True)
    p = _project(tmp_path, [user, view])
    p.materialize(until=at(7), incremental=False)
    res = p.query({"user_id": [1, 2]}, ["user.x"], now=at(3), with_status=True)
    one, two = (d["user.x"] for d in res.details or [])
    assert (one.value, one.status, one.event_time) == (None, "future", at(5))
    assert (two.value, two.status) == (None, "future")  # its event (day 2) is past, but it arrived on day 6
    assert p.query({"user_id": [1]}, ["user.x"], now=at(7)).rows[0]["user.x"] == "day 5"
    p.close()


# 8. Float64 keys 0.0 and -0.0: the training set answered, online answered missing for both.
def test_negative_zero_and_zero_are_one_key_on_every_path(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": [-0.0, 1.5], "ts": [at(1), at(1)], "x": ["zero", "one and a half"]},
                            key_dtype=pt.Float64)
    p = _project(tmp_path, [user, view])
    spine = pl.DataFrame({"user_id": [0.0, -0.0, 1.5], "timestamp": [at(2)] * 3})
    assert p.training_set(spine, ["user.x"]).column("user.x").to_pylist() == ["zero", "zero", "one and a half"]
    p.materialize(until=at(2), incremental=False)
    assert p.query({"user_id": [0.0, -0.0, 1.5]}, ["user.x"], now=at(2)).column("user.x") == [
        "zero", "zero", "one and a half"]
    p.close()


# 9. Spine keys of the wrong type were cast offline (1.5 -> 1: another user's features), rejected online.
@pytest.mark.parametrize("bad", [[1.5], [True], ["1"]], ids=["float", "bool", "string"])
def test_wrong_key_types_are_refused_on_both_paths(tmp_path, bad):
    user, view = _user_view(tmp_path, {"user_id": [1], "ts": [at(1)], "x": ["one"]})
    p = _project(tmp_path, [user, view])
    with pytest.raises(EntityKeyError, match="Int64 key"):
        p.training_set(pl.DataFrame({"user_id": bad, "timestamp": [at(2)]}), ["user.x"])
    p.materialize(until=at(2), incremental=False)
    with pytest.raises(EntityKeyError, match="Int64 key"):
        p.query({"user_id": bad}, ["user.x"], now=at(2))
    p.close()


def test_a_single_string_key_is_one_entity(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": ["t1"], "ts": [at(1)], "x": ["one"]}, key_dtype=pt.String)
    p = _project(tmp_path, [user, view])
    p.materialize(until=at(2), incremental=False)
    assert p.query({"user_id": "t1"}, "user.x", now=at(2)).rows == [{"user.x": "one"}]  # not 't' and '1'
    with pytest.raises(EntityKeyError, match="single values"):
        p.query({"user_id": "t1", "other": ["a", "b"]}, "user.x", now=at(2))
    p.close()


# 10. Async resolvers offline ignored their call policy: 200 calls in flight with concurrency=2, and
#     a call slower than the timeout succeeded offline while it timed out online.
def test_async_policy_and_fallback_are_the_same_offline_and_online(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": list(range(12)), "ts": [at(1)] * 12, "x": [str(i) for i in range(12)]})
    in_flight, most = [0], [0]

    @pt.resolver(entity=user, outputs=pt.Feature("echo", pt.String, default="fallback"), timeout=0.2, concurrency=2)
    async def echo(x: str | None) -> str | None:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        try:
            await asyncio.sleep(1.0 if x == "7" else 0)  # user 7's call always outlives the timeout
            return x
        finally:
            in_flight[0] -= 1

    p = _project(tmp_path, [user, view, echo])
    spine = pl.DataFrame({"user_id": list(range(12)), "timestamp": [at(2)] * 12})
    table = p.training_set(spine, ["user.echo"], with_status=True)
    assert most[0] == 2
    assert table.column("user.echo").to_pylist()[6:9] == ["6", "fallback", "8"]
    assert table.column("user.echo:status").to_pylist()[7] == "error"
    fallbacks = json.loads(table.schema.metadata[b"parity.fallbacks"])
    assert fallbacks["user.echo"]["rows"] == 1 and "timed out" in fallbacks["user.echo"]["first_error"]
    p.materialize(until=at(2), incremental=False)
    online = p.query({"user_id": [6, 7]}, ["user.echo"], now=at(2), with_status=True)
    assert online.column("user.echo") == ["6", "fallback"]
    assert (online.details or [])[1]["user.echo"].status == "error"
    p.close()


# 11. Changing a module-level constant a resolver reads left its version unchanged.
def test_resolver_version_covers_constants_and_helpers(tmp_path):
    package = tmp_path / "feats"
    package.mkdir()
    (tmp_path / "u.parquet").write_bytes(b"")
    code = '''
import parity as pt
user = pt.Entity("user", keys={"user_id": pt.Int64})
src = pt.ParquetSource("u", path="u.parquet", event_time="ts")
v = pt.FeatureView("v", entity=user, source=src, features=[pt.Feature("x", pt.Float64)])

def helper(x):
    return x * SCALE

@pt.resolver(entity=user, outputs=pt.Feature("y", pt.Float64))
def y(x: float | None) -> float | None:
    return None if x is None else helper(x) + OFFSET

SCALE = 2.0
OFFSET = 1.0
'''
    (package / "__init__.py").write_text(code)
    (tmp_path / "parity.toml").write_text('[project]\nname = "t"\ndefinitions = "feats"\n')

    def version() -> str:
        from parity.registry.versions import Versions

        project = pt.Project.load(str(tmp_path))
        catalog = project.catalog
        return Versions(catalog).version(catalog.features[("user", "y")])

    first = version()
    assert version() == first  # stable across loads
    (package / "__init__.py").write_text(code.replace("OFFSET = 1.0", "OFFSET = 2.0"))
    second = version()
    assert second != first
    (package / "__init__.py").write_text(code.replace("OFFSET = 1.0", "OFFSET = 2.0").replace("SCALE = 2.0", "SCALE = 3.0"))
    assert version() not in (first, second)  # a constant read by a helper counts too


# 14. training_set inside a running event loop (Jupyter) failed: asyncio.run() cannot be called
#     from a running event loop.
def test_training_set_with_async_resolver_inside_a_running_loop(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": [1], "ts": [at(1)], "x": ["one"]})

    @pt.resolver(entity=user, outputs=pt.Feature("loud", pt.String))
    async def loud(x: str | None) -> str | None:
        await asyncio.sleep(0)
        return None if x is None else x.upper()

    p = _project(tmp_path, [user, view, loud])

    async def notebook_cell() -> list[object]:
        table = p.training_set(pl.DataFrame({"user_id": [1], "timestamp": [at(2)]}), ["user.loud"])
        return table.column("user.loud").to_pylist()

    assert asyncio.run(notebook_cell()) == ["ONE"]
    p.close()


# 15. Store reads ran synchronously inside the event loop: one slow read stalled every other step.
class _BarrierStore:
    """An online store whose reads wait until two reads are in progress at once (a slow network store)."""

    reads_may_block = True

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.barrier = threading.Barrier(2, timeout=10)

    def read(self, table: str, keys: Sequence[tuple[object, ...]]) -> list[StoredRow | None]:
        self.barrier.wait()  # raises BrokenBarrierError if the other read never starts meanwhile
        return self.inner.read(table, keys)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def test_concurrent_steps_do_not_wait_for_each_others_store_reads(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": [1], "ts": [at(1)], "x": ["one"]})
    pl.DataFrame({"user_id": [1], "ts": [at(1)], "n": [5]}).write_parquet(tmp_path / "w.parquet")
    other = pt.FeatureView("w", entity=user, source=pt.ParquetSource("w", path="w.parquet", event_time="ts"),
                           features=[pt.Feature("n", pt.Int64)])

    @pt.resolver(entity=user, outputs=pt.Feature("z", pt.Int64))
    async def z(now: dt.datetime) -> int:
        return now.day

    p = _project(tmp_path, [user, view, other, z])
    p.materialize(until=at(2), incremental=False)
    p._store = _BarrierStore(p.online_store())  # type: ignore[assignment]
    res = p.query({"user_id": [1]}, ["user.x", "user.n", "user.z"], now=at(2))
    assert res.rows == [{"user.x": "one", "user.n": 5, "user.z": 2}]
    p.close()


# 6b. Rows whose created time is null: when they arrived is unknown. Re-reading only them in an
#     incremental run let one overwrite a stored value it ties with (the later write wins a tie);
#     skipping them lost late rows. Such sources are read in full.
def test_rows_without_created_time_force_a_full_read(tmp_path):
    user, view = _user_view(tmp_path, {"user_id": [1, 1], "ts": [at(1), at(1)], "cr": [None, at(1)],
                                       "x": ["A: no created time", "B: ingested later"]}, created=True)
    p = _project(tmp_path, [user, view])
    p.materialize(until=at(2), incremental=False)
    (report,) = p.materialize(until=at(3))
    assert report.full_because and "no created time" in report.full_because
    assert p.query({"user_id": [1]}, "user.x", now=at(3)).rows == [{"user.x": "B: ingested later"}]
    assert p.training_set(pl.DataFrame({"user_id": [1], "timestamp": [at(3)]}), "user.x").column(
        "user.x").to_pylist() == ["B: ingested later"]
    p.close()
