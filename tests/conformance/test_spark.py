"""The Spark engine against the local one, on what the property tests do not reach: relationships
and resolvers (a failing one falls back, counted as locally), statuses and masks, every kind of
spine, the result written by the executors, errors raised on an executor, and the missing extra.
The as-of, window and source conformance suites run Spark too (tests/properties, test_sources)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from typing import Annotated

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import parity as pt
from parity.errors import DataError, EntityKeyError, MissingColumnError
from tests.spark_support import assert_same_as_local, spark
from tests.support import at, small_definitions, write_payments, write_users

REFS = ["payment.amount", "payment.user.country", "payment.user.limit", "payment.share_of_limit", "payment.risky"]


def _project(tmp: str, **kwargs: object) -> pt.Project:
    write_users(os.path.join(tmp, "users.parquet"))
    write_payments(os.path.join(tmp, "payments.parquet"))
    defs = small_definitions(tmp)
    payment = defs[1]

    @pt.resolver(entity=payment, outputs=pt.Feature("risky", pt.Bool, default=False))
    def risky(amount: float | None, country: Annotated[str | None, "user.country"], now: dt.datetime) -> bool:
        if amount is not None and amount > 100:
            raise ValueError(f"no rule for {amount}")  # falls back to the default, counted
        return country == "FR" and now.day > 3

    roles = [pt.Role("analyst", grants=[pt.Grant(entity="payment"), pt.Grant(entity="user", use="masked")])]
    return pt.Project.from_definitions([*defs, risky, *roles], root=tmp, online_store_path=os.path.join(tmp, "o.db"),
                                       registry_path=os.path.join(tmp, "r.db"), **kwargs)  # type: ignore[arg-type]


def _spine() -> pa.Table:
    times = [at(2, 1), at(4, 1), at(7, 1), at(8), at(9), at(2), at(1)]
    return pa.table({"payment_id": ["a", "b", "c", "a", "zz", "c", None], "label": list(range(7)),
                     "timestamp": pa.array(times, pa.timestamp("us", "UTC"))})


def test_relationships_resolvers_statuses_and_fallbacks_equal_local(tmp_path) -> None:
    project = _project(str(tmp_path))
    try:
        spine = _spine()
        local = project.training_set(spine, REFS, with_status=True)
        got = project.training_set(spine, REFS, with_status=True, engine="spark", spark=spark(), partitions=3)
        assert_same_as_local(got, local, spine.column_names, "Spark")
        fallbacks = json.loads(got.schema.metadata[b"parity.fallbacks"])
        assert fallbacks["payment.risky"]["rows"] == 1 and "no rule for 500.0" in fallbacks["payment.risky"]["first_error"]
        assert got.column("payment.risky:status").to_pylist().count("error") == 1
    finally:
        project.close()


def test_a_masked_feature_is_null_on_spark_as_locally(tmp_path) -> None:
    project = _project(str(tmp_path))
    try:
        analyst = pt.Principal("ana", roles=("analyst",))
        spine = _spine()
        refs = REFS[:3]  # a masked value feeds no resolver
        local = project.training_set(spine, refs, with_status=True, principal=analyst, record_baseline=False)
        got = project.training_set(spine, refs, with_status=True, principal=analyst, engine="spark", spark=spark())
        assert_same_as_local(got, local, spine.column_names, "Spark, masked")
        assert set(got.column("payment.user.country:status").to_pylist()) == {"masked"}
        assert got.column("payment.amount").null_count < got.num_rows  # not everything is masked
    finally:
        project.close()


def test_every_spine_kind_keeps_spine_order(tmp_path) -> None:
    """A Parquet folder (file order, then row order), a Spark DataFrame and a local table."""
    project = _project(str(tmp_path))
    try:
        spine = _spine()
        local = project.training_set(spine, REFS)
        folder = tmp_path / "spine"
        folder.mkdir()
        # sorted names: "a 1;x" then "b+0" ('+', ';' and ' ' as URIs spell them, decoded as paths)
        pq.write_table(spine.slice(0, 3), folder / "b+0.parquet")
        pq.write_table(spine.slice(3), folder / "a 1;x.parquet")
        (folder / "notes.txt").write_text("not data")  # the local reader reads .parquet files only: so does Spark
        reordered = pa.concat_tables([spine.slice(3), spine.slice(0, 3)])
        want = project.training_set(reordered, REFS)
        from_folder = project.training_set(str(folder), REFS, engine="spark", spark=spark())
        assert_same_as_local(from_folder, want, spine.column_names, "a Parquet folder spine")
        frame = spark().createDataFrame(spine.to_pandas()).repartition(1)
        from_frame = project.training_set(frame, REFS, engine="spark", spark=spark())
        assert_same_as_local(from_frame, local, spine.column_names, "a Spark DataFrame spine")
        nanos = spine.set_column(2, "timestamp", spine.column("timestamp").cast(pa.timestamp("ns", "UTC")))
        pq.write_table(nanos, tmp_path / "nanos.parquet")  # pandas' default unit, which Spark refuses as a time
        from_nanos = project.training_set(str(tmp_path / "nanos.parquet"), REFS, engine="spark", spark=spark())
        assert_same_as_local(from_nanos, project.training_set(nanos, REFS), spine.column_names, "a nanosecond spine")
    finally:
        project.close()


def test_written_by_the_executors_in_spine_order_with_metadata(tmp_path) -> None:
    project = _project(str(tmp_path))
    try:
        spine = _spine()
        local = project.training_set(spine, REFS, with_status=True)
        out = str(tmp_path / "ts")
        result = project.spark_training_set(spine, REFS, with_status=True, spark=spark(), out=out, partitions=2)
        assert result.path == out and not [p for p in os.listdir(tmp_path) if ".partial-" in p]
        back = pl.read_parquet(os.path.join(out, "*.parquet")).to_arrow()
        back = back.cast(pa.schema([(f.name, pa.string() if f.type == pa.large_string() else f.type) for f in back.schema]))
        meta = json.load(open(os.path.join(out, "_parity.json")))
        assert_same_as_local(back.replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()}),
                             local, spine.column_names, "written by Spark")
        with pytest.raises(DataError, match="exists"):
            project.spark_training_set(spine, REFS, spark=spark(), out=out)
    finally:
        project.close()


def test_errors_raised_on_executors_come_back_as_themselves(tmp_path) -> None:
    project = _project(str(tmp_path))
    try:
        spine = _spine()
        with pytest.raises(MissingColumnError, match="no timestamp column 'ts'"):
            project.training_set(spine, REFS, timestamp_column="ts", engine="spark", spark=spark())
        floats = spine.set_column(0, "payment_id", pa.array([1.0] * spine.num_rows))
        with pytest.raises(EntityKeyError, match="spine column 'payment_id' has type Float64"):
            project.training_set(floats, REFS, engine="spark", spark=spark())
        pl.DataFrame({"payment_id": ["a"], "ts": [at(2)], "user_id": ["not a number"], "amount": [1.0]}).write_parquet(
            tmp_path / "payments.parquet")
        with pytest.raises(DataError, match="user_id") as caught:
            project.training_set(spine, REFS, engine="spark", spark=spark())
        assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    finally:
        project.close()


def test_hidden_file_names_are_refused_not_skipped(tmp_path) -> None:
    """Spark never reads "_x.parquet": answering from fewer rows than locally would be a silent drift."""
    project = _project(str(tmp_path))
    try:
        folder = tmp_path / "pay"
        folder.mkdir()
        os.rename(tmp_path / "payments.parquet", folder / "_payments.parquet")
        defs = small_definitions(str(tmp_path))
        facts = defs[3]
        moved = pt.FeatureView("facts", entity=defs[1], source=pt.ParquetSource("payments", path=str(folder),
                                                                               event_time="ts"),
                               features=list(facts.features))
        other = pt.Project.from_definitions([defs[0], defs[1], moved], root=str(tmp_path))
        try:
            with pytest.raises(DataError, match="_payments.parquet"):
                other.training_set(_spine(), ["payment.amount"], engine="spark", spark=spark())
            assert other.training_set(_spine(), ["payment.amount"]).num_rows == 7  # the local engine reads it
        finally:
            other.close()
    finally:
        project.close()


def test_the_cli_writes_a_spark_training_set(tmp_path) -> None:
    _project(str(tmp_path)).close()
    (tmp_path / "parity.toml").write_text('[project]\ndefinitions = "defs.py"\n')
    (tmp_path / "defs.py").write_text(
        "from tests.support import small_definitions\nimport os\n"
        "objects = small_definitions(os.path.dirname(os.path.abspath(__file__)))\n"
        "user, payment, profile, facts, share_of_limit = objects\n")
    pq.write_table(_spine(), tmp_path / "spine.parquet")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    run = subprocess.run([sys.executable, "-m", "parity", "training-set", "--spine", "spine.parquet", "--features",
                          "payment.amount,payment.user.limit", "--out", "ts", "--engine", "spark", "--master",
                          "local[1]", "--partitions", "2"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = pl.read_parquet(tmp_path / "ts" / "*.parquet")
    project = pt.Project.load(str(tmp_path))
    try:
        want = pl.from_arrow(project.training_set(_spine(), ["payment.amount", "payment.user.limit"]))
    finally:
        project.close()
    assert got.equals(want), (got, want)
    bad = subprocess.run([sys.executable, "-m", "parity", "training-set", "--spine", "spine.parquet", "--features",
                          "payment.amount", "--out", "ts", "--engine", "spark"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "exists" in bad.stderr and "Traceback" not in bad.stderr


def test_a_missing_spark_extra_names_the_install_line(monkeypatch) -> None:
    from parity.errors import MissingExtraError
    from parity.runtime import spark as on_spark

    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(MissingExtraError, match=r'pip install "parity\[spark\]"'):
        on_spark.session("local[1]")


def _redis_project(tmp_path, defs: list[object], namespace: str) -> pt.Project:  # type: ignore[no-untyped-def]
    from tests.support_services import REDIS_URL, require_service

    require_service("redis", "127.0.0.1", 6379)
    return pt.Project.from_definitions(defs, root=str(tmp_path), online_store_type="redis", online_store_url=REDIS_URL,
                                       online_store_namespace=namespace, registry_path=str(tmp_path / f"{namespace}.db"))


def _report(r: object) -> tuple[object, ...]:
    return (r.rows_read, r.keys, r.written, r.quarantined, sorted(v.describe() for v in r.violations))  # type: ignore[attr-defined]


def test_materialize_on_spark_writes_from_the_executors_what_a_local_run_writes(tmp_path) -> None:
    """Expectations judged on the whole batch before any write (a quarantined batch writes nothing),
    ties and duplicates chosen as locally, the same keys served from Redis."""
    import uuid

    from tests.unit.test_expectations import GOOD, definitions

    rng = __import__("random").Random(7)
    many = pl.DataFrame({"user_id": [rng.randrange(500) for _ in range(5000)],
                         "ts": [at(1 + rng.randrange(3), rng.randrange(3)) for _ in range(5000)],
                         "amount": [float(i) for i in range(5000)],  # distinct per row: a wrong choice shows
                         "country": [rng.choice(["DE", "FR"]) for _ in range(5000)]})
    bad = GOOD.with_columns(ts=pl.lit(at(5)), amount=pl.when(pl.col("user_id") == 3).then(5_000.0)
                            .otherwise(pl.col("amount")))
    local = _redis_project(tmp_path, definitions("quarantine"), f"spark-l-{uuid.uuid4().hex[:8]}")
    remote = _redis_project(tmp_path, definitions("quarantine"), f"spark-s-{uuid.uuid4().hex[:8]}")
    try:
        for data, until in ((many, at(4)), (pl.concat([many, bad]), at(6))):
            data.write_parquet(tmp_path / "u.parquet")
            (want,) = local.materialize(until=until, incremental=False)
            (got,) = remote.materialize(until=until, incremental=False, engine="spark", spark=spark(), partitions=3)
            assert _report(got) == _report(want)
            keys = {"user_id": list(range(-1, 500))}
            assert (remote.query(keys, ["user.amount", "user.country"], now=until).rows
                    == local.query(keys, ["user.amount", "user.country"], now=until).rows)
        assert got.quarantined and got.written == 0
    finally:
        for project in (local, remote):
            project.online_store().drop()  # type: ignore[attr-defined]
            project.close()


def test_materialize_on_spark_refuses_a_store_the_executors_cannot_share(tmp_path) -> None:
    from parity.errors import ConfigError

    project = _project(str(tmp_path))
    try:
        with pytest.raises(ConfigError, match="Redis"):
            project.materialize(engine="spark", spark=spark())
    finally:
        project.close()


def test_a_key_named_like_an_internal_column_keeps_its_values(tmp_path) -> None:
    entity = pt.Entity("thing", keys={"c0": pt.Int64})
    pl.DataFrame({"c0": [1, 2, 1], "ts": [at(1), at(1), at(2)], "v": [10, 20, 30]}).write_parquet(tmp_path / "t.parquet")
    view = pt.FeatureView("things", entity=entity, source=pt.ParquetSource("t", path="t.parquet", event_time="ts"),
                          features=[pt.Feature("v", pt.Int64)])
    project = pt.Project.from_definitions([entity, view], root=str(tmp_path))
    try:
        spine = pa.table({"c0": [1, 2, 1, 3], "timestamp": pa.array([at(1), at(3), at(3), at(3)], pa.timestamp("us", "UTC"))})
        got = project.training_set(spine, ["thing.v"], engine="spark", spark=spark())
        assert got.column("thing.v").to_pylist() == [10, 20, 30, None]
        assert got.column("c0").to_pylist() == [1, 2, 1, 3]
    finally:
        project.close()


def test_errors_cross_from_executor_to_driver_whole_and_as_their_own_type() -> None:
    from parity.errors import UnknownFeatureError
    from parity.ports.distributed import carried_one, driver_errors

    def fails(_: object) -> object:
        raise UnknownFeatureError("a>>b\nsecond line", ["a>>c"])

    with pytest.raises(UnknownFeatureError) as caught, driver_errors():
        try:
            carried_one(fails)(None)
        except RuntimeError as exc:  # as Spark wraps it: the worker's text inside its own error
            raise type("PythonException", (Exception,), {"__module__": "pyspark.errors"})(f"wrapped: {exc}") from None
    assert str(caught.value) == str(UnknownFeatureError("a>>b\nsecond line", ["a>>c"]))


def test_jdbc_keeps_the_urls_tls_options_and_refuses_what_it_cannot_map() -> None:
    from parity.connectors import db_url
    from parity.connectors.spark_rows import _jdbc_connection
    from parity.errors import ConfigError
    from parity.ports.secret import Secret

    class Reader:
        def __init__(self, text: str) -> None:
            self.secret = Secret(text, "env:DB")
            self.url = db_url.parse(self.secret, schemes=("postgresql", "mysql"), example="")

    got = _jdbc_connection(Reader("postgresql://u:p%40ss@db.example:5433/my db?sslmode=verify-full"), "postgresql")
    assert got == {"url": "jdbc:postgresql://db.example:5433/my%20db?sslmode=verify-full", "user": "u", "password": "p@ss"}
    mysql = _jdbc_connection(Reader("mysql://db/test"), "mysql")
    assert mysql["user"] == "root" and "tinyInt1isBit=false" in mysql["url"] and "+00:00" in mysql["sessionInitStatement"]
    with pytest.raises(ConfigError, match="host") as caught:
        _jdbc_connection(Reader("postgresql://u:secret@db/x?host=/var/run/postgresql"), "postgresql")
    assert "secret" not in str(caught.value)


def test_a_spine_that_is_not_parquet_is_one_line_on_spark(tmp_path) -> None:
    project = _project(str(tmp_path))
    try:
        (tmp_path / "bad.parquet").write_text("garbage")
        with pytest.raises(DataError, match="not a readable Parquet file") as caught:
            project.training_set(str(tmp_path / "bad.parquet"), REFS, engine="spark", spark=spark())
        assert "\n" not in str(caught.value) and "at org.apache" not in str(caught.value)
    finally:
        project.close()


def test_a_delta_tables_partition_columns_and_versions_are_read_on_spark_as_locally(tmp_path) -> None:
    """Spark reads the Parquet files the Delta log lists, in its order; the partition values are
    not in the files, so they come from the log, per file (a feature here, and a key's tie across
    commits decided by the add order)."""
    import time

    from deltalake import write_deltalake

    for i, (users, hour, region) in enumerate([([0, 1, 2], 5, "eu"), ([1], 5, "u s%2F"), ([2, 3], 7, "apac")]):
        rows = pl.DataFrame({"user_id": users, "ts": [at(1, hour)] * len(users), "amount": [i * 100.0 + u for u in users],
                             "region": [region] * len(users)},
                            schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "amount": pl.Float64,
                                    "region": pl.String})
        write_deltalake(str(tmp_path / "t"), rows.to_arrow(), mode="append", partition_by=["region"])
        time.sleep(0.002)
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    views = [pt.FeatureView(name, entity=user, source=pt.DeltaSource(name, path="t", event_time="ts", version=version),
                            features=[pt.Feature(f"amount{suffix}", pt.Float64, column="amount"),
                                      pt.Feature(f"region{suffix}", pt.String, column="region")])
             for name, version, suffix in [("latest", None, ""), ("first", 0, "_v0")]]
    spine = pl.DataFrame({"user_id": [0, 1, 2, 3, 9], "timestamp": [at(2)] * 5})
    refs = ["user.amount", "user.region", "user.amount_v0", "user.region_v0"]
    with pt.Project.from_definitions([user, *views], root=str(tmp_path)) as project:
        local = project.training_set(spine, refs, with_status=True)
        on_spark = project.training_set(spine, refs, with_status=True, engine="spark", spark=spark(), partitions=2)
    assert_same_as_local(on_spark, local, ["user_id", "timestamp"], "Delta on Spark")
    assert local.column("user.region").to_pylist() == ["eu", "u s%2F", "apac", "apac", None]  # a file name escaped
    assert local.column("user.amount").to_pylist() == [0.0, 101.0, 202.0, 203.0, None]
    assert local.column("user.region_v0").to_pylist() == ["eu", "eu", "eu", None, None]


def test_a_delta_table_whose_schema_grew_is_read_on_spark_as_locally(tmp_path) -> None:
    """A column added by a later commit (schema evolution) is null in the files written before it,
    on Spark as locally: Spark merges the files' columns rather than take the first file's."""
    import time

    from deltalake import write_deltalake

    path = str(tmp_path / "t")
    first = pl.DataFrame({"user_id": [0, 1], "ts": [at(1, 5)] * 2, "region": ["eu", "eu"]},
                         schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "region": pl.String})
    write_deltalake(path, first.to_arrow(), mode="append")
    time.sleep(0.002)
    grown = pl.DataFrame({"user_id": [1, 2], "ts": [at(1, 6)] * 2, "region": ["us", "us"], "amount": [5.5, 6.5],
                          "seen": [at(1, 6) + dt.timedelta(minutes=30), at(1, 7)]},
                         schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "region": pl.String,
                                 "amount": pl.Float64, "seen": pl.Datetime("us", "UTC")})
    write_deltalake(path, grown.to_arrow(), mode="append", schema_mode="merge")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("v", entity=user, source=pt.DeltaSource("t", path="t", event_time="ts"),
                          features=[pt.Feature("amount", pt.Float64), pt.Feature("region", pt.String),
                                    pt.Feature("seen", pt.Timestamp)])
    spine = pl.DataFrame({"user_id": [0, 1, 2, 3], "timestamp": [at(2)] * 4})
    refs = ["user.amount", "user.region", "user.seen"]
    with pt.Project.from_definitions([user, view], root=str(tmp_path)) as project:
        local = project.training_set(spine, refs, with_status=True)
        on_spark = project.training_set(spine, refs, with_status=True, engine="spark", spark=spark(), partitions=2)
    assert_same_as_local(on_spark, local, ["user_id", "timestamp"], "a grown Delta table on Spark")
    assert local.column("user.amount").to_pylist() == [None, 5.5, 6.5, None]
    assert local.column("user.region").to_pylist() == ["eu", "us", "us", None]
    assert local.column("user.seen").to_pylist()[1:3] == [at(1, 6) + dt.timedelta(minutes=30), at(1, 7)]


def test_a_nanosecond_time_only_later_files_hold_is_restored_from_their_footer(tmp_path) -> None:
    """Spark hands nanosecond times over as Int64 (``restored_types``): the file type is found in
    the first file that holds the column, not only the first file (a column a schema gained)."""
    from parity.connectors.spark_rows import restored_types

    old, new = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    pq.write_table(pa.table({"k": [1]}), old)
    pq.write_table(pa.table({"k": [2], "seen": pa.array([1], pa.timestamp("ns", "UTC"))}), new)
    as_spark = pa.schema([pa.field("k", pa.int64()), pa.field("seen", pa.int64())])
    assert restored_types([old, new], ["k", "seen"], as_spark) == {"seen": pa.timestamp("ns", "UTC")}
    assert restored_types([old], ["k", "seen"], as_spark) == {}


def test_a_standalone_master_that_cannot_be_reached_is_one_line_at_once(tmp_path) -> None:
    """Spark's client retries an unreachable standalone master for about a minute, then prints a
    JVM trace: parity tries each of its addresses first and says which could not be reached."""
    from parity.errors import ConfigError
    from parity.runtime.spark import session

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"cannot be reached \(127\.0\.0\.1:{port}: Connection refused; "
                                          rf"127\.0\.0\.1:{port}: Connection refused\)"):
        session(f"spark://127.0.0.1:{port},127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="is not host:port"):
        session("spark://master-without-port")
    _project(str(tmp_path)).close()
    (tmp_path / "parity.toml").write_text('[project]\ndefinitions = "defs.py"\n')
    (tmp_path / "defs.py").write_text(
        "from tests.support import small_definitions\nimport os\n"
        "objects = small_definitions(os.path.dirname(os.path.abspath(__file__)))\n")
    pq.write_table(_spine(), tmp_path / "spine.parquet")
    run = subprocess.run([sys.executable, "-m", "parity", "training-set", "--spine", "spine.parquet", "--features",
                          "payment.amount", "--out", "ts", "--engine", "spark", "--master", f"spark://127.0.0.1:{port}"],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "cannot be reached" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "ts").exists()
