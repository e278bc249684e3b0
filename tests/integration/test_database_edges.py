"""Edges of real databases where one feature once had several answers (found by an adversarial
review): sequence columns, created times that are null, collations, partitions, infinite
timestamps, key columns of unusual types. Each test holds the three paths to one answer or to
one clear error."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterator

import polars as pl
import pytest

import parity as pt
from parity.errors import ConfigError, DataError
from tests.spark_support import spark
from tests.support_services import MYSQL_URL, POSTGRES_URL, require_service

UTC = dt.UTC
T1, T2, T3 = (dt.datetime(2024, 1, d, tzinfo=UTC) for d in (1, 2, 3))


def pg(*statements: str, params: tuple[object, ...] = ()) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        for i, sql in enumerate(statements):
            con.execute(sql, (params or None) if i == len(statements) - 1 else None)  # parameters: the last one


@pytest.fixture
def table(request):  # type: ignore[no-untyped-def]
    require_service("postgresql", "127.0.0.1", 5432)
    name = f"edge_{uuid.uuid4().hex[:10]}"
    os.environ["PARITY_EDGE_PG"] = POSTGRES_URL
    yield name
    pg(f'DROP TABLE IF EXISTS "{name}" CASCADE', f'DROP VIEW IF EXISTS "{name}_view"')


def _view(source: pt.Source, key: pt.DType, features: list[pt.Feature], request_time: bool):  # type: ignore[no-untyped-def]
    entity = pt.Entity("e", keys={"k": key})
    view = pt.FeatureView("v", entity=entity, source=source, features=features,
                          max_staleness=dt.timedelta(0) if request_time else None, timeout=10)
    return entity, view


@contextlib.contextmanager
def project_of(tmp_path, source: pt.Source, key: pt.DType, features: list[pt.Feature], *, request_time: bool = False,
               store: str = "o.db") -> Iterator[pt.Project]:
    entity, view = _view(source, key, features, request_time)
    project = pt.Project.from_definitions([entity, view], root=str(tmp_path), online_store_path=str(tmp_path / store))
    try:
        yield project
    finally:
        project.close()


def three_paths(tmp_path, source: pt.Source, key: pt.DType, features: list[pt.Feature], keys: list[object],
                t: dt.datetime) -> dict[str, list[object]]:
    """The first feature for each key at t: training set, materialized store, request-time lookup."""
    ref = f"e.{features[0].name}"
    out: dict[str, list[object]] = {}
    with project_of(tmp_path, source, key, features, store="a.db") as p:
        spine = pl.DataFrame({"k": keys, "timestamp": [t] * len(keys)})
        out["offline"] = p.training_set(spine, [ref]).column(ref).to_pylist()
        out["spark"] = p.training_set(spine, [ref], engine="spark", spark=spark()).column(ref).to_pylist()  # over JDBC
        p.materialize(until=t, incremental=False)
        out["materialized"] = p.query({"k": keys}, [ref], now=t).column(ref)
    with project_of(tmp_path, source, key, features, request_time=True, store="b.db") as p:
        result = p.query({"k": keys}, [ref], now=t, with_status=True)
        out["request-time"] = [d[ref].value if d[ref].status != "error" else f"error: {d[ref].error}"
                               for d in result.details or []]
    return out


def one_answer(answers: dict[str, list[object]]) -> list[object]:
    first = answers["offline"]
    assert all(a == first for a in answers.values()), answers
    return first


def src(table: str, **kwargs: object) -> pt.PostgresSource:
    return pt.PostgresSource("pg", table=table, connection="env:PARITY_EDGE_PG", event_time="ev", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("values", [("NULL", "1"), ("1", "1"), ("'9'", "'10'")], ids=["null", "duplicate", "text"])
def test_a_sequence_column_must_be_unique_non_null_integers(tmp_path, table, values):
    kind = "text" if "'" in values[0] else "bigint"
    pg(f'CREATE TABLE "{table}" (seq {kind}, k bigint, ev timestamptz, x bigint)',
       f"""INSERT INTO "{table}" VALUES ({values[0]}, 1, '2024-01-01Z', 7), ({values[1]}, 1, '2024-01-01Z', 8)""")
    with project_of(tmp_path, src(table, sequence="seq"), pt.Int64, [pt.Feature("x", pt.Int64)]) as p:
        with pytest.raises(DataError, match="sequence column 'seq'"):
            p.training_set(pl.DataFrame({"k": [1], "timestamp": [T2]}), ["e.x"])
        with pytest.raises(DataError, match="sequence column 'seq'"):  # checked over JDBC too
            p.training_set(pl.DataFrame({"k": [1], "timestamp": [T2]}), ["e.x"], engine="spark", spark=spark())


def test_a_late_row_without_created_time_reaches_an_incremental_run(tmp_path, table):
    pg(f'CREATE TABLE "{table}" (id bigserial, k bigint, ev timestamptz, cr timestamptz, x bigint)',
       f'INSERT INTO "{table}" (k, ev, cr, x) VALUES (1, %s, %s, 1)', params=(T1, T1))
    with project_of(tmp_path, src(table, created_time="cr", sequence="id"), pt.Int64, [pt.Feature("x", pt.Int64)]) as p:
        p.materialize(until=T2)
        # arrives after the first run, with an event time before its cutoff and no created time
        pg(f'INSERT INTO "{table}" (k, ev, cr, x) VALUES (1, %s, NULL, 2)', params=(T1 + dt.timedelta(hours=1),))
        p.materialize(until=T3)
        assert p.query({"k": [1]}, ["e.x"], now=T3).column("e.x") == [2]
        assert p.training_set(pl.DataFrame({"k": [1], "timestamp": [T3]}), ["e.x"]).column("e.x").to_pylist() == [2]


def test_keys_compare_by_code_points_under_any_collation(tmp_path, table):
    pg("CREATE COLLATION IF NOT EXISTS parity_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
       f'CREATE TABLE "{table}" (id bigserial, k text COLLATE parity_ci, ev timestamptz, x bigint)',
       f"""INSERT INTO "{table}" (k, ev, x) VALUES ('a', '2024-01-01Z', 1), ('A', '2024-01-01Z', 2)""",
       f'CREATE INDEX ON "{table}" (k, ev)')
    answers = three_paths(tmp_path, src(table, sequence="id"), pt.String, [pt.Feature("x", pt.Int64)],
                          ["a", "A", "b"], T2)
    assert one_answer(answers) == [1, 2, None]


def test_partitioned_table_breaks_ties_by_partition_then_row(tmp_path, table):
    pg(f'CREATE TABLE "{table}" (k bigint, region text, ev timestamptz, x bigint) PARTITION BY LIST (region)',
       f'CREATE TABLE "{table}_a" PARTITION OF "{table}" FOR VALUES IN (\'a\')',
       f'CREATE TABLE "{table}_b" PARTITION OF "{table}" FOR VALUES IN (\'b\')',
       f"""INSERT INTO "{table}" VALUES (1, 'b', '2024-01-01Z', 2)""",
       f"""INSERT INTO "{table}" VALUES (1, 'a', '2024-01-01Z', 1)""")
    answers = three_paths(tmp_path, src(table), pt.Int64, [pt.Feature("x", pt.Int64)], [1], T2)
    import psycopg

    with psycopg.connect(POSTGRES_URL) as con:  # the later partition (by oid), then the later row
        (latest,) = con.execute(f'SELECT x FROM "{table}" ORDER BY tableoid DESC, ctid DESC LIMIT 1').fetchone()
    assert one_answer(answers) == [latest]


def test_a_view_without_sequence_is_refused_clearly(tmp_path, table):
    pg(f'CREATE TABLE "{table}" (k bigint, ev timestamptz, x bigint)',
       f'CREATE VIEW "{table}_view" AS SELECT * FROM "{table}"')
    with project_of(tmp_path, src(f"{table}_view"), pt.Int64, [pt.Feature("x", pt.Int64)]) as p:
        with pytest.raises(DataError, match="is a view.*declare sequence="):
            p.training_set(pl.DataFrame({"k": [1], "timestamp": [T2]}), ["e.x"])


def test_infinite_timestamps_are_refused_on_every_path(tmp_path, table):
    pg(f'CREATE TABLE "{table}" (id bigserial, k bigint, ev timestamptz, at timestamptz)',
       f"""INSERT INTO "{table}" (k, ev, at) VALUES (1, '2024-01-01Z', 'infinity')""")
    with project_of(tmp_path, src(table, sequence="id"), pt.Int64, [pt.Feature("at", pt.Timestamp)]) as p:
        with pytest.raises(DataError, match="column 'at'.*outside the years 1 to 9999"):
            p.training_set(pl.DataFrame({"k": [1], "timestamp": [T2]}), ["e.at"])
        with pytest.raises(DataError, match="outside the years 1 to 9999"):
            p.materialize(until=T2, incremental=False)


@pytest.mark.parametrize(
    ("column", "dtype", "stored", "keys", "want"),
    [
        ("numeric", pt.Int64, ["5", "7"], [5, 7, 6], ["five", "seven", None]),
        ("real", pt.Float64, ["0.1", "0.25"], [0.1, float.fromhex("0x1.99999ap-4"), 0.25], [None, "five", "seven"]),
        ("uuid", pt.String, ["'00000000-0000-0000-0000-000000000001'", "'00000000-0000-0000-0000-000000000002'"],
         ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000003"], ["five", None]),
    ],
    ids=["numeric-int64", "real-float64", "uuid-string"],
)
@pytest.mark.parametrize("indexed", [False, True], ids=["ranked", "lateral"])
def test_key_columns_of_other_types_match_exactly_on_every_path(tmp_path, table, column, dtype, stored, keys, want,
                                                                indexed):
    pg(f'CREATE TABLE "{table}" (id bigserial, k {column}, ev timestamptz, x text)',
       f"""INSERT INTO "{table}" (k, ev, x) VALUES ({stored[0]}, '2024-01-01Z', 'five'), ({stored[1]}, '2024-01-01Z', 'seven')""",
       *([f'CREATE INDEX ON "{table}" (k, ev)'] if indexed else []))
    answers = three_paths(tmp_path, src(table, sequence="id"), dtype, [pt.Feature("x", pt.String)], keys, T2)
    assert one_answer(answers) == want


def test_mariadb_year_is_no_event_time_and_a_bad_charset_is_refused(tmp_path):
    require_service("mariadb", "127.0.0.1", 3306)
    import pymysql

    name = f"edge_{uuid.uuid4().hex[:10]}"
    con = pymysql.connect(host="127.0.0.1", user="root", password="", database="test", autocommit=True)
    try:
        with con.cursor() as cur:
            cur.execute(f"CREATE TABLE `{name}` (id BIGINT AUTO_INCREMENT PRIMARY KEY, k BIGINT, y YEAR, x BIGINT)")
            cur.execute(f"INSERT INTO `{name}` (k, y, x) VALUES (1, 2024, 5)")
        os.environ["PARITY_EDGE_MYSQL"] = MYSQL_URL
        source = pt.MySQLSource("my", table=name, connection="env:PARITY_EDGE_MYSQL", event_time="y")
        with project_of(tmp_path, source, pt.Int64, [pt.Feature("x", pt.Int64)]) as p:
            with pytest.raises(DataError, match="column 'y'.*cannot be an event or created time"):
                p.training_set(pl.DataFrame({"k": [1], "timestamp": [T2]}), ["e.x"])
        os.environ["PARITY_EDGE_MYSQL_BAD"] = MYSQL_URL + "?charset=latin9x"
        bad = pt.MySQLSource("my", table=name, connection="env:PARITY_EDGE_MYSQL_BAD", event_time="y")
        with project_of(tmp_path, bad, pt.Int64, [pt.Feature("x", pt.Int64)]) as p:
            with pytest.raises(ConfigError, match="charset 'latin9x'"):
                p.training_set(pl.DataFrame({"k": [1], "timestamp": [T2]}), ["e.x"])
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        con.close()
