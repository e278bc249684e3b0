"""One suite over every source connector and every path: the same rows must give the same answer.

Each case of ``source_cases`` is stored natively in Parquet (a file and a folder), DuckDB, SQLite,
PostgreSQL and MariaDB, then read through every path — the training set (scan), materialization
into each online store (SQLite and Redis) and, for the databases, request-time lookups — and each
answer is compared bit for bit with the reference computed from the logical rows. Where a system
cannot hold a case, the test says so by name.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid

import polars as pl
import pytest

import parity as pt
from parity.errors import DataError, MissingColumnError, NaiveTimestampError
from parity.semantics.values import same_value
from tests.conformance import writers
from tests.conformance.source_cases import AWARE_WITH_ZONE, CASES, ERROR, NULL_EVENT, Case, T, expected
from tests.spark_support import assert_same_as_local, spark
from tests.support import assert_same_table
from tests.support_services import REDIS_URL, require_service

PATHS = ["scan", "materialize-sqlite", "materialize-redis", "lookup"]
# Parquet read by Spark's reader, PostgreSQL and MariaDB over JDBC, DuckDB scanned on the driver
SPARK_KINDS = ("parquet-folder", "delta", "duckdb", "postgres", "mysql")  # one of each Spark path (a single file: the property tests)


@pytest.fixture(autouse=True)
def _drop_tables():  # type: ignore[no-untyped-def]
    yield
    writers.drop_tables()


def _project(tmp: str, case: Case, source: pt.Source, *, store: str = "sqlite", request_time: bool = False,
             namespace: str = "") -> pt.Project:
    key, key_dtype = case.key
    entity = pt.Entity("e", keys={"key": key_dtype})
    view = pt.FeatureView(
        "v", entity=entity, source=source, key_columns={"key": key},
        features=[pt.Feature(name, dtype, column=column) for name, column, dtype in case.features],
        max_staleness=dt.timedelta(0) if request_time else None, timeout=60.0,  # 70,000 keys take a while
    )
    return pt.Project.from_definitions(
        [entity, view], root=tmp, online_store_path=os.path.join(tmp, f"online-{uuid.uuid4().hex[:6]}.db"),
        registry_path=os.path.join(tmp, "registry.db"), online_store_type=store,
        online_store_url=REDIS_URL if store == "redis" else None, online_store_namespace=namespace or "parity",
    )


def _refs(case: Case) -> list[str]:
    return [f"e.{name}" for name, _, _ in case.features]


def _answers_scan(tmp: str, case: Case, source: pt.Source, *, spark_too: bool = False) -> list[dict[str, object]]:
    project = _project(tmp, case, source)
    try:
        spine = pl.DataFrame({"key": [k for k, _ in case.probes], "timestamp": [t for _, t in case.probes]},
                             schema={"key": writers.NATIVE["int" if case.key[1] == pt.Int64 else "string"]["polars"],
                                     "timestamp": pl.Datetime("us", "UTC")})
        table = project.training_set(spine, _refs(case))
        # the partitioned engine reads every source by key partition: the same table, and the
        # same count of rows without an event time
        partitioned = project.training_set(spine, _refs(case), partitions=3, with_status=True)
        assert_same_table(partitioned, project.training_set(spine, _refs(case), with_status=True),
                          f"{source.name}: 3 partitions")
        assert partitioned.schema.metadata[b"parity.no_event_time"] == table.schema.metadata[b"parity.no_event_time"]
        if spark_too:  # Spark reads it (Parquet by Spark's reader, others on the driver): the same table
            on_spark = project.training_set(spine, _refs(case), with_status=True, engine="spark", spark=spark(),
                                            partitions=2)
            assert_same_as_local(on_spark, project.training_set(spine, _refs(case), with_status=True),
                                 ["key", "timestamp"], f"{source.name} on Spark")
        if case is NULL_EVENT:
            assert json.loads(table.schema.metadata[b"parity.no_event_time"]) == {"v": 3}
        return [{name: table.column(f"e.{name}")[i].as_py() for name, _, _ in case.features}
                for i in range(table.num_rows)]
    finally:
        project.close()


def _by_time(case: Case) -> dict[dt.datetime, list[int]]:
    groups: dict[dt.datetime, list[int]] = {}
    for i, (_, t) in enumerate(case.probes):
        groups.setdefault(t, []).append(i)
    return groups


def _answers_online(tmp: str, case: Case, source: pt.Source, *, store: str, request_time: bool
                    ) -> list[dict[str, object]]:
    answers: list[dict[str, object]] = [{} for _ in case.probes]
    for t, rows in sorted(_by_time(case).items()):
        namespace = f"conf-{uuid.uuid4().hex}"
        project = _project(tmp, case, source, store=store, request_time=request_time, namespace=namespace)
        try:
            if not request_time:
                reports = project.materialize(until=t, incremental=False)
                if case is NULL_EVENT:
                    assert reports[0].no_event_time == 3
            keys = [case.probes[i][0] for i in rows]
            result = project.query({"key": keys}, _refs(case), now=t, with_status=True)
            for i, details in zip(rows, result.details or []):
                for name, _, _ in case.features:
                    value = details[f"e.{name}"]
                    answers[i][name] = ERROR if value.status == "error" else value.value
        finally:
            if store == "redis":
                project.online_store().drop()  # type: ignore[attr-defined]
            project.close()
    return answers


def _check(case: Case, kind: str, path: str, got: list[dict[str, object]]) -> None:
    want = expected(case)
    wrong = [(case.probes[i], g, w) for i, (g, w) in enumerate(zip(got, want))
             if any(not same_value(g[f], w[f]) for f in w)]
    assert not wrong, f"{case.name} on {kind} via {path}: {len(wrong)} probes differ, e.g. {wrong[:3]}"


@pytest.mark.parametrize("kind", writers.KINDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_path_gives_the_reference_answer(case: Case, kind: str, tmp_path) -> None:
    if kind in case.gaps:
        pytest.skip(f"{kind} cannot represent case {case.name!r}: {case.gaps[kind]}")
    tmp = str(tmp_path)
    source = writers.write(kind, tmp, case)
    paths = [p for p in PATHS if p != "lookup" or kind in writers.DATABASES]
    if "materialize-redis" in paths:
        require_service("redis", "127.0.0.1", 6379)
    for path in paths:
        if case.error:
            _check_refused(case, kind, path, tmp, source)
            continue
        if path == "scan":
            got = _answers_scan(tmp, case, source, spark_too=kind in SPARK_KINDS)
        else:
            got = _answers_online(tmp, case, source, store="redis" if path.endswith("redis") else "sqlite",
                                  request_time=path == "lookup")
        _check(case, kind, path, got)


def _check_refused(case: Case, kind: str, path: str, tmp: str, source: pt.Source) -> None:
    """A value that does not fit its dtype: an error naming the column, on every path."""
    column = case.features[0][1]
    if path == "scan":
        with pytest.raises(DataError, match=column):
            _answers_scan(tmp, case, source)
        if kind in SPARK_KINDS:  # raised on an executor, the same error on the driver
            project = _project(tmp, case, source)
            try:
                spine = pl.DataFrame({"key": [k for k, _ in case.probes], "timestamp": [t for _, t in case.probes]},
                                     schema={"key": writers.NATIVE["int" if case.key[1] == pt.Int64 else "string"][
                                         "polars"], "timestamp": pl.Datetime("us", "UTC")})
                with pytest.raises(DataError, match=column):
                    project.training_set(spine, _refs(case), engine="spark", spark=spark())
            finally:
                project.close()
    elif path.startswith("materialize"):
        project = _project(tmp, case, source, store="redis" if path.endswith("redis") else "sqlite",
                           namespace=f"conf-{uuid.uuid4().hex}")
        try:
            with pytest.raises(DataError, match=column):
                project.materialize(until=T(2), incremental=False)
        finally:
            project.close()
    else:
        got = _answers_online(tmp, case, source, store="sqlite", request_time=True)
        assert all(g[f] == ERROR for g in got for f in g), got


def test_incremental_materialization_with_a_declared_zone_skips_nothing(tmp_path) -> None:
    """A declared zone once shifted the watermark of zone-aware columns: the 12:30 row was lost."""
    for kind in ("parquet", "postgres", "mysql"):
        tmp = tmp_path / kind
        tmp.mkdir()
        source = writers.write(kind, str(tmp), AWARE_WITH_ZONE)
        project = _project(str(tmp), AWARE_WITH_ZONE, source)
        try:
            project.materialize(until=T(2, 12), incremental=True)
            assert project.query({"key": [1]}, ["e.v"], now=T(2, 12)).rows[0]["e.v"] == "noon", kind
            project.materialize(until=T(2, 14), incremental=True)
            assert project.query({"key": [1, 2]}, ["e.v"], now=T(2, 14)).column("e.v") == [
                "half past twelve", "k2 late arrival"], kind
        finally:
            project.close()


@pytest.mark.parametrize("kind", writers.KINDS)
def test_missing_column_is_named_with_a_suggestion(kind: str, tmp_path) -> None:
    source = writers.write(kind, str(tmp_path), NULL_EVENT)
    entity = pt.Entity("e", keys={"k": pt.Int64})
    view = pt.FeatureView("v", entity=entity, source=source, features=[pt.Feature("vv", pt.String)])
    project = pt.Project.from_definitions([entity, view], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"))
    with pytest.raises(MissingColumnError, match=r"'vv'.*did you mean 'v'"):
        project.training_set(pl.DataFrame({"k": [1], "timestamp": [T(3)]}), ["e.vv"])
    project.close()


@pytest.mark.parametrize("kind", writers.KINDS)
def test_naive_times_need_a_declared_zone_on_every_source(kind: str, tmp_path) -> None:
    from tests.conformance.source_cases import NAIVE_DST

    case = Case(**{**NAIVE_DST.__dict__, "timezone": None})
    source = writers.write(kind, str(tmp_path), case)
    project = _project(str(tmp_path), case, source)
    try:
        with pytest.raises(NaiveTimestampError, match="timezone="):
            project.training_set(pl.DataFrame({"key": [1], "timestamp": [T(3)]}), _refs(case))
        with pytest.raises(NaiveTimestampError, match="timezone="):
            project.materialize(until=T(3), incremental=False)
    finally:
        project.close()
