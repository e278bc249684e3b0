"""Training sets on Apache Spark (``pip install "parity[spark]"``): the session, the spine as a
Spark frame in spine order, and the result as a Spark DataFrame or Parquet written by the executors.

The plan runs in ``offline.spark_engine`` (the local kernels on the executors); this module puts
its output in the shape of a local training set — the spine's columns, one column per feature
named as requested, ``<feature>:status`` columns, masked features null — so a Spark training set
and a local one are the same table.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from parity.define.sources import MySQLSource, PostgresSource, Source
from parity.errors import ConfigError, DataError, MissingExtraError, one_line
from parity.ports.distributed import (
    DataFrame,
    DistributedRows,
    Session,
    arrow_schema,
    carried_iter,
    driver_errors,
    spark_schema,
    to_spark,
)
from parity.ports.source import SourceReader

if TYPE_CHECKING:
    from parity.define.features import FeatureView
    from parity.ingest.materialize import MaterializeReport
    from parity.runtime.project import Progress, Project

METADATA_FILE = "_parity.json"  # beside the part files of a written training set (Spark skips "_" files)


def session(master: str | None = None, conf: Sequence[tuple[str, str]] = ()) -> Session:
    """The Spark session: the active one when no master is named, else one on ``master``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise MissingExtraError("pyspark", "spark") from None
    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    if master is not None and master.startswith("spark://"):
        _reachable(master)
    if (master or "local[*]").startswith("local"):  # the executors' Python is this one: it has parity installed
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("parity").master(master or "local[*]")
    from parity.connectors.spark_rows import JDBC_DRIVERS

    # UTC in the JVMs too: a naive database time crosses JDBC as a java.sql.Timestamp in the JVM's
    # zone, where a wall time inside a DST gap would move
    utc = "-Duser.timezone=UTC"
    defaults = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false",
                "spark.sql.execution.arrow.maxRecordsPerBatch": "65536",
                "spark.driver.extraJavaOptions": utc, "spark.executor.extraJavaOptions": utc}
    jars = [jar for _, _, _, jar in JDBC_DRIVERS.values() if os.path.exists(jar)]  # JDBC for PostgreSQL, MySQL
    if jars and not any(key == "spark.jars" for key, _ in conf):
        defaults["spark.jars"] = ",".join(jars)
    for key, value in [*defaults.items(), *conf]:
        builder = builder.config(key, value)
    import shutil

    try:
        started = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - a JVM that cannot start says why in many forms
        hint = ("Spark needs Java 17 or newer: install it or set JAVA_HOME" if shutil.which("java") is None
                and not os.environ.get("JAVA_HOME") else "its reason is printed above by the JVM; check --master")
        raise ConfigError(f"Spark could not start on {master or 'local[*]'} ({hint}): {one_line(str(exc))[:200]}") from None
    started.sparkContext.setLogLevel("ERROR")  # parity's progress and errors, not Spark's warnings
    return started


MASTER_TIMEOUT = 5.0  # seconds to reach a standalone master before saying it cannot be reached


def _reachable(master: str) -> None:
    """A standalone master (``spark://host:port``, or several for HA: ``spark://h1:p1,h2:p2``) that
    none of its addresses answers is said at once: Spark's own client retries for about a minute
    and then prints a JVM stack trace."""
    import socket

    reasons = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"Spark master {master!r}: {address!r} is not host:port; give spark://host:7077")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=MASTER_TIMEOUT):
                return
        except OSError as exc:
            reasons.append(f"{address}: {exc.strerror or type(exc).__name__}")
    raise ConfigError(f"Spark master {master!r} cannot be reached ({'; '.join(reasons)}); check --master or "
                      f"[spark] master, and that the master is running")


def rows_for(source: Source, reader: SourceReader) -> DistributedRows:
    """How Spark reads a source: Parquet files (a Parquet source's, or those a Delta log lists) by
    Spark's own reader on the executors; any other source scanned on the driver by its local reader."""
    from parity.connectors.parquet import ParquetReader
    from parity.connectors.spark_rows import DriverRows, JdbcRows, ParquetRows

    if isinstance(reader, ParquetReader):
        return ParquetRows(reader)
    if isinstance(source, PostgresSource | MySQLSource):
        return JdbcRows(reader)
    return DriverRows(reader)


def positioned(spark: Session, spine: object) -> DataFrame:
    """The spine as a Spark frame with each row's place (``POSITION``): a Parquet path or folder
    (its file order, then row order, as a local read concatenates them), a Spark DataFrame (its
    order, fixed by a checkpoint so a second pass cannot renumber it), or a local table."""
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from parity.offline.spark_engine import POSITION
    from parity.offline.spine import to_arrow

    if isinstance(spine, SparkFrame):
        return spine.withColumn(POSITION, F.monotonically_increasing_id()).localCheckpoint(eager=True)
    if isinstance(spine, str | os.PathLike):
        return _spine_files(spark, os.fspath(spine))
    table = to_arrow(spine)
    table = table.append_column(POSITION, pa.array(range(table.num_rows), pa.int64()))
    target = spark_schema(table.schema)
    return spark.createDataFrame(to_spark(table, target), schema=from_arrow_schema(target))


def _spine_files(spark: Session, path: str) -> DataFrame:
    """A Parquet spine (a file or a folder) with each row's place: its file's place among the
    sorted files, then its row — the order of a local read. Nanosecond times are read (Spark
    refuses them as times) and held to the microsecond, as Spark holds every time."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from parity.connectors.spark_rows import FILE, ROW, file_order, read_files, restored_types, with_types
    from parity.offline.spark_engine import POSITION

    where = f"spine {path!r}"
    local = "://" not in path
    if local and not os.path.exists(path):
        raise DataError(f"{where} does not exist")
    if local and os.path.isfile(path):  # the local reader's own check, before Spark's pages of stack
        import pyarrow.parquet as pq

        try:
            pq.ParquetFile(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"spine file {path!r} is not a readable Parquet file ({one_line(str(exc))})") from None

    def listed() -> list[str]:
        if os.path.isfile(path):
            return [os.path.abspath(path)]
        files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names if f.endswith(".parquet"))
        if not files:
            raise DataError(f"{where} is a folder with no .parquet files")
        return files

    raw, files = read_files(spark, path, listed if local else None, where)
    ordinals = {p: i for i, p in enumerate(files)}
    columns = [c for c in raw.columns if c not in (FILE, ROW)]
    spark_arrow = arrow_schema(raw)
    restore = restored_types(files, columns, spark_arrow)
    target = spark_schema(pa.schema([*(pa.field(c, restore.get(c, spark_arrow.field(c).type)) for c in columns),
                                     pa.field(POSITION, pa.int64())]))

    def place(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import polars as pl

        for batch in batches:
            batch = with_types(batch, restore)
            got = pl.from_arrow(batch)
            assert isinstance(got, pl.DataFrame)
            table = pa.Table.from_batches([batch]).append_column(POSITION, file_order(got, ordinals, where).to_arrow())
            yield from to_spark(table, target).to_batches()

    return raw.mapInArrow(carried_iter(place), from_arrow_schema(target))


@dataclass
class SparkTrainingSet:
    """A training set built on Spark: the frame (lazy until written or collected), and once it has
    been computed, the resolver fallbacks and the source rows skipped for having no event time."""

    frame: DataFrame
    run: Any  # offline.spark_engine.SparkRun
    outputs: tuple[tuple[str, str], ...]  # (reference, column id)
    path: str | None = None
    public_errors: bool = False  # a principal asked: an error's detail is not shown (``semantics.calls``)
    kept: Any = None  # the persisted frame under the sort, released once written or collected

    def fallbacks(self) -> dict[str, dict[str, object]]:
        from parity.semantics import calls

        got = self.run.fallbacks()
        shown = calls.public if self.public_errors else str
        return {ref: {"rows": got[cid][0], "first_error": shown(got[cid][2])} for ref, cid in self.outputs if cid in got}

    def no_event_time(self) -> dict[str, int]:
        return dict(self.run.no_event_time())

    def metadata(self) -> dict[str, str]:
        return {"parity.fallbacks": json.dumps(self.fallbacks()),
                "parity.no_event_time": json.dumps(self.no_event_time(), sort_keys=True)}

    def write(self, path: str) -> SparkTrainingSet:
        """Write it as Parquet by the executors (nothing collected to the driver), in spine order
        (part files named in order), with its metadata in ``_parity.json`` beside them (a local
        folder; a cluster path gets the part files only)."""
        import shutil
        import uuid

        local = "://" not in path
        path = os.path.normpath(path) if local else path
        if local and os.path.exists(path):
            raise DataError(f"{path!r} exists; a training set is written to a new folder")
        # a local folder is written beside its place and renamed into it: never half-written
        target = f"{path}.partial-{uuid.uuid4().hex[:8]}" if local else path
        # instants as Parquet's TIMESTAMP_MICROS (UTC), not Spark's default INT96, which other readers
        # take for naive nanoseconds
        self.frame.sparkSession.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        try:
            with driver_errors():
                self.frame.write.mode("errorifexists").parquet(target)
            if local:
                with open(os.path.join(target, METADATA_FILE), "w") as fh:
                    json.dump(self.metadata(), fh, sort_keys=True)
                os.rename(target, path)
        finally:
            if local and os.path.exists(target):
                shutil.rmtree(target, ignore_errors=True)
            self.release()
        self.path = path
        return self

    def release(self) -> None:
        """Free the cached rows under the sort (done by ``write`` and ``to_arrow``; call it when
        done with ``frame`` yourself)."""
        if self.kept is not None:
            self.kept.unpersist()
            self.kept = None
        for frame in self.run.cached:
            frame.unpersist()
        self.run.cached = []

    def to_arrow(self) -> pa.Table:
        """Collect it to the driver (a small set, or a test): the table a local run gives."""
        try:
            with driver_errors():
                table = self.frame.toArrow()
        finally:
            self.release()
        metadata = {k.encode(): v.encode() for k, v in self.metadata().items()}
        nullable = pa.schema([f.with_nullable(True) for f in table.schema])  # as a local table's columns
        return table.cast(nullable).combine_chunks().replace_schema_metadata(metadata)


def _ship_definitions(root: str) -> None:
    """Every module loaded from the project's folder goes to the executors by value: a
    project's definitions and their helpers are not installed there (parity is)."""
    from pyspark import cloudpickle

    base = os.path.abspath(root) + os.sep
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if path.startswith(base) and ".venv" not in path and "site-packages" not in path:
            cloudpickle.register_pickle_by_value(module)


def partitions_of(project: Project, spark: Session, source: Source, asked: int | None) -> int:
    """Key partitions of a step on Spark: as asked, else ``[offline] partitions``, else enough that
    the co-groups running at once (one per core) share the memory budget, a whole number of rounds
    of the cluster's cores and at least two rounds (tasks of one size keep every core busy)."""
    if asked is not None:
        return asked
    if project.settings.offline_partitions:
        return project.settings.offline_partitions
    from parity.runtime.partitioning import machine_budget, partitions_for

    cores = max(1, spark.sparkContext.defaultParallelism)
    budget = (project.settings.offline_memory_budget or machine_budget()) // cores
    fit = partitions_for(source, project._reader, budget)
    return max(2, -(-fit // cores)) * cores


def training_set(project: Project, spine: object, refs: list[str], *, timestamp_column: str,
                 key_columns: Mapping[str, str] | None, timezone: str | None, with_status: bool,
                 progress: Progress, access: Any, partitions: int | None, spark: Session | None) -> SparkTrainingSet:
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    from parity.offline.spark_engine import POSITION, SparkEngine
    from parity.runtime import wiring
    from parity.runtime.project import STATUS_SUFFIX
    from parity.semantics.values import arrow_type

    spark = spark or session(project.settings.spark_master, project.settings.spark_conf)
    plan = project.plan(refs)
    keys = {k: d for root, _ in plan.roots for k, d in project.catalog.entities[root].keys.items()}
    status_columns = [ref + STATUS_SUFFIX for ref in refs] if with_status else []
    _ship_definitions(project.settings.root)
    engine = SparkEngine(project.catalog, lambda source: rows_for(source, project._reader(source)),
                         spark, progress, http_client=wiring.http_client)
    spine_frame = positioned(spark, spine)
    with driver_errors():
        probes = engine.spine(spine_frame, timestamp_column=timestamp_column, keys=keys, key_columns=key_columns,
                              timezone=timezone, reserved=[*refs, *status_columns])
    run = engine.run(plan, probes, with_status=with_status,
                     partitions=lambda source: partitions_of(project, spark, source, partitions))
    masked = set(access.masked) if access is not None else set()
    selected = [F.col(POSITION)]
    for ref, cid in plan.outputs:
        dtype = project.catalog.feature_at(project.catalog.parse(ref)).dtype
        spark_type = from_arrow_type(spark_schema(pa.schema([pa.field("x", arrow_type(dtype))])).field(0).type)
        value = F.lit(None).cast(spark_type) if ref in masked else F.col(run.names[cid]).cast(spark_type)
        selected.append(value.alias(ref))
    for ref, cid in plan.outputs if with_status else ():
        status = F.lit("masked") if ref in masked else F.col(run.statuses[cid])
        selected.append(status.alias(ref + STATUS_SUFFIX))
    if set(refs) & set(spine_frame.columns):
        raise DataError(f"the spine already has column(s) {sorted(set(refs) & set(spine_frame.columns))}, which the "
                        f"training set would add; rename them")
    # Kept once computed: the sort into spine order samples its input by running it, which would
    # otherwise run every step twice.
    from pyspark import StorageLevel

    joined = spine_frame.join(run.frame.select(*selected), POSITION, "inner").persist(StorageLevel.MEMORY_AND_DISK)
    frame = joined.orderBy(POSITION).drop(POSITION)
    result = SparkTrainingSet(frame, run, plan.outputs, public_errors=access is not None, kept=joined)
    if masked:  # a first error could carry a masked value
        result.outputs = tuple((ref, cid) for ref, cid in plan.outputs if ref not in masked)
    return result


def materialize(project: Project, views: Sequence[FeatureView], *, until_us: int, incremental: bool,
                progress: Progress, partitions: int | None, spark: Session | None) -> list[MaterializeReport]:
    """Feature views materialized on Spark: chosen and written by the executors into the Redis
    online store each opens (a SQLite file is one machine's: refused)."""
    import functools

    from parity.ingest.spark_materialize import materialize_view_on_spark
    from parity.runtime import wiring

    settings = project.settings
    if settings.online_store_type != "redis":
        raise ConfigError(f"materialize on Spark writes from the executors, which cannot share the {settings.online_store_type} "
                          f"online store; use Redis ([online_store] type = \"redis\") or the local engine")
    spark = spark or session(settings.spark_master, settings.spark_conf)
    opens = functools.partial(wiring.online_store, settings.online_store_type,
                              settings.resolve(settings.online_store_path), settings.online_store_url, settings.root,
                              settings.online_store_namespace)
    return [materialize_view_on_spark(view, project.table_of[view.name],
                                      rows_for(view.source, project._reader(view.source)),
                                      project.online_store(), opens, spark, until_us=until_us, incremental=incremental,
                                      progress=progress, partitions=partitions_of(project, spark, view.source, partitions))
            for view in views]
