"""Sources read by Spark for the distributed offline engine (``ports.distributed``).

Parquet files and folders are read by Spark itself (on the executors, from any path Spark's file
systems reach); each batch is then normalized by the same ``connectors.frames.normalize`` as a
local scan, so a value, a time and a key are read the same way on every path. A row's ingestion
order (``ordering.SEQUENCE``, the last tie-break between rows of one key) is its file's place in
the sorted file list, then its row in the file — the order the local reader concatenates them in.

Any other source (a DuckDB or SQLite file, the event log, a small dimension table) is scanned by
its local reader on the driver and handed to Spark as it is: the rows are already normalized.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import polars as pl
import pyarrow as pa

from parity.connectors.frames import check_columns, normalize
from parity.connectors.parquet import ParquetReader
from parity.errors import ConfigError, DataError, one_line
from parity.ports.distributed import (
    PART,
    DataFrame,
    PartOf,
    Session,
    arrow_schema,
    carried_iter,
    driver_errors,
    spark_schema,
    to_spark,
)
from parity.ports.source import ScanRequest, SourceReader
from parity.semantics.ordering import SEQUENCE

FILE, ROW = "__parity_file", "__parity_file_row"  # a row's file (its URI) and row in it, as Spark reads them
_ROW_BITS = 40  # rows per file below 2**40; files below 2**23: the sequence fits an Int64


def _local_path(uri: str) -> str:
    """A file as Spark names it (a URI), as the driver lists it: a local path, or the URI itself."""
    parsed = urlsplit(uri)
    return unquote(parsed.path) if parsed.scheme in ("", "file") else uri


def read_files(session: Session, path: str, listed: Callable[[], list[str]] | None,
               where: str, merge_schemas: bool = False) -> tuple[DataFrame, list[str]]:
    """Parquet read by Spark with each row's file and row (``FILE``, ``ROW``), and the files in
    the order a local read concatenates them. A local folder is read as the local reader lists it
    (its ``.parquet`` files, sorted; hidden names refused: Spark would skip them); a cluster path
    (``s3a://``, ``hdfs://``) as Spark lists it, sorted. ``merge_schemas``: the files' columns are
    the union of theirs (a Delta table whose schema grew), a file without one reads it as null, as
    locally — else Spark takes one file's columns for all."""
    from pyspark.sql import functions as F

    files = listed() if listed is not None else None
    if files is not None:
        _check_visible(files, path, where)
    # Spark refuses nanosecond times: read as the Int64 they are stored as, then restored (restored_types)
    session.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    try:
        reading = session.read.option("mergeSchema", "true") if merge_schemas else session.read
        raw = reading.parquet(*files) if files is not None else \
            reading.option("recursiveFileLookup", "true").parquet(path)
    except Exception as exc:  # noqa: BLE001 - Spark's analysis errors name the path; keep one line
        raise DataError(f"{where}: Spark cannot read it as Parquet: {one_line(str(exc))[:400]}") from None
    order = files if files is not None else sorted(_local_path(f) for f in raw.inputFiles())
    return raw.select("*", F.col("_metadata.file_path").alias(FILE), F.col("_metadata.row_index").alias(ROW)), order


def file_order(rows: pl.DataFrame, ordinals: dict[str, int], where: str) -> pl.Series:
    """Each row's place in the files' concatenation, from ``FILE`` and ``ROW`` (an Int64 whose
    order is the local reader's row order)."""
    names = rows[FILE].unique().to_list()
    unknown = [n for n in names if _local_path(n) not in ordinals]
    if unknown:
        raise DataError(f"{where}: Spark read a file the driver did not list: {unknown[0]}")
    places = {n: ordinals[_local_path(n)] for n in names}
    return rows.select(pl.col(FILE).replace_strict(places, return_dtype=pl.Int64) * (1 << _ROW_BITS)
                       + pl.col(ROW).cast(pl.Int64)).to_series()


def _empty(schema: pa.Schema) -> pl.DataFrame:
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def _with_part(schema: pa.Schema) -> pa.Schema:
    return spark_schema(pa.schema([*schema, pa.field(PART, pa.int64())]))


def _tagged(rows: pl.DataFrame, part_of: PartOf, target: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Normalized rows with their key partition, as Spark takes them."""
    return to_spark(rows.with_columns(part_of(rows).alias(PART)).to_arrow(), target).to_batches()


def _check_visible(files: list[str], root: str, where: str) -> None:
    """Spark (Hadoop) never reads a file or folder whose name starts with "_" or ".": refuse such a
    source rather than answer from fewer rows than a local read."""
    base = root if os.path.isdir(root) else os.path.dirname(root)
    hidden = [f for f in files if any(part.startswith(("_", ".")) for part in os.path.relpath(f, base).split(os.sep))]
    if hidden:
        raise DataError(f"{where}: Spark skips files and folders whose names start with '_' or '.' (Hadoop's hidden "
                        f"files), and {len(hidden)} of its files are such: {[os.path.relpath(f, base) for f in hidden][:3]}"
                        f"; rename them, or use the local engine")


def restored_types(files: list[str], columns: list[str], spark: pa.Schema) -> dict[str, pa.DataType]:
    """The file types of the columns Spark hands over as another type (nanosecond times as Int64,
    UInt64 as a decimal), read from the footer of the first file that holds each (a column a
    table's schema gained is only in its later files), so they are read as a local scan reads them."""
    import pyarrow.parquet as pq

    out: dict[str, pa.DataType] = {}
    missing = [name for name in columns if name in spark.names]
    for file in files:
        if not missing or not os.path.exists(file):
            break
        stored = pq.read_schema(file)
        for name in [n for n in missing if n in stored.names]:
            missing.remove(name)
            arrow = stored.field(name).type
            changed = (pa.types.is_timestamp(arrow) and arrow.unit == "ns") or pa.types.is_uint64(arrow)
            if changed and spark.field(name).type != arrow:
                out[name] = arrow
    return out


def with_types(batch: pa.RecordBatch, types: dict[str, pa.DataType]) -> pa.RecordBatch:
    """``batch`` with the columns ``restored_types`` names cast back to their file types."""
    for name, arrow in types.items():
        at = batch.schema.get_field_index(name)
        batch = batch.set_column(at, name, batch.column(at).cast(arrow))
    return batch


class ParquetRows:
    """A Parquet source read by Spark's own reader, normalized on the executors; a Delta table as
    the Parquet files its log lists, each file's partition values added to its rows."""

    def __init__(self, local: ParquetReader) -> None:
        self.local = local
        self.source = local.source

    def describe(self) -> str:
        return self.local.describe() + " read by Spark"

    def rows(self, session: Session, request: ScanRequest, skipped: Any, part_of: PartOf) -> DataFrame:
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        source, where = self.source, self.describe()
        path = self.local.path
        # a Delta table's partition values are in its log, not its files; a cluster path is listed by Spark
        listed, constants = self.local.files_and_constants() if "://" not in path else (None, {})
        raw, files = read_files(session, path, (lambda: listed) if listed is not None else None, where,
                                merge_schemas=self.local.evolving_schema)
        check_columns([*raw.columns, *constants], source, request, where)
        needed = list(dict.fromkeys([source.event_time, *([source.created_time] if source.created_time else []),
                                     *(col for col, _ in request.columns.values())]))
        in_files = [c for c in needed if c not in constants]
        frame = raw.select(*[F.col("`" + c.replace("`", "``") + "`") for c in in_files], FILE, ROW)
        ordinals = {p: i for i, p in enumerate(files)}
        raw_arrow = arrow_schema(frame)
        restore = restored_types(files, in_files, raw_arrow)
        raw_arrow = pa.schema([pa.field(f.name, restore.get(f.name, f.type)) for f in raw_arrow])
        added = {c: constants[c] for c in needed if c in constants}
        empty = (_empty(raw_arrow).with_columns(pl.Series(c, [], dtype=v.dtype) for c, v in added.items())
                 .drop(FILE, ROW).with_columns(pl.lit(0, pl.Int64).alias(SEQUENCE)))
        target = _with_part(normalize(empty.lazy(), source, request, where).rows.to_arrow().schema)

        def normalized(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                batch = with_types(batch, restore)
                got = pl.from_arrow(batch)
                assert isinstance(got, pl.DataFrame)
                if added:
                    place = file_order(got, ordinals, where) // (1 << _ROW_BITS)  # the row's file, in the listing
                    got = got.with_columns(values.gather(place).alias(c) for c, values in added.items())
                got = got.with_columns(file_order(got, ordinals, where).alias(SEQUENCE)).drop(FILE, ROW)
                scan = normalize(got.lazy(), source, request, where)
                if scan.no_event_time:  # keyed by the batch's first row: a batch computed twice counts once
                    skipped.add({got[SEQUENCE].min(): scan.no_event_time})
                yield from _tagged(scan.rows, part_of, target)

        return frame.mapInArrow(carried_iter(normalized), from_arrow_schema(target))


JDBC_DRIVERS = {  # scheme -> (JDBC URL scheme, driver class, Debian's package of its jar, the jar)
    "postgresql": ("postgresql", "org.postgresql.Driver", "libpostgresql-jdbc-java", "/usr/share/java/postgresql.jar"),
    # jdbc:mysql: so Spark quotes names as MySQL does (`x`); the MariaDB driver takes it (permitMysqlScheme)
    "mysql": ("mysql", "org.mariadb.jdbc.Driver", "libmariadb-java", "/usr/share/java/mariadb-java-client.jar"),
}


# URL options that mean the same to the JDBC driver, by their JDBC names; any other is refused (a
# dropped sslmode would send the password to a server that was never verified)
_JDBC_OPTIONS = {
    "postgresql": {"sslmode": "sslmode", "sslrootcert": "sslrootcert", "sslcert": "sslcert", "sslkey": "sslkey",
                   "connect_timeout": "connectTimeout", "application_name": "ApplicationName"},
    "mysql": {"charset": "characterEncoding"},
}


def _jdbc_connection(reader: Any, scheme: str) -> dict[str, str]:
    """The JDBC URL and credentials of the reader's checked URL (``connectors.db_url``), with the
    local reader's defaults, and for MySQL its session: UTC, and YEAR and TINYINT(1) as the integers
    they are (the driver's defaults read them as a date and a boolean)."""
    url = reader.url
    where = reader.secret.reference
    names = _JDBC_OPTIONS["postgresql" if scheme == "postgresql" else "mysql"]
    unknown = [k for k, _ in url.options if k not in names]
    if unknown:
        raise ConfigError(f"{where}: URL option(s) {unknown} have no JDBC equivalent parity knows (known: "
                          f"{sorted(names)}); remove them to read it on Spark")
    params = {names[k]: v for k, v in url.options}
    if scheme == "mysql":
        params.update({"permitMysqlScheme": "true", "yearIsDateType": "false", "tinyInt1isBit": "false"})
    host = url.host or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    port = url.port or (5432 if scheme == "postgresql" else 3306)
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    out = {"url": f"jdbc:{scheme}://{host}:{port}/{quote(url.database, safe='')}" + (f"?{query}" if query else "")}
    user = url.user if url.user is not None else ("root" if scheme == "mysql" else None)
    if user is not None:
        out["user"] = user
    if url.password is not None:
        out["password"] = url.password
    if scheme == "mysql":  # as the local reader's session: times in UTC
        out["sessionInitStatement"] = "SET time_zone = '+00:00'"
    return out


def _sequence_bounds(session: Session, options: dict[str, str], sql: str, reader: Any, where: str) -> tuple[int, int]:
    """A declared sequence checked by the database itself (unique and never null, as a local scan
    checks), and its bounds: the ranges Spark splits the read into. One row comes back."""
    seq = reader.quote(SEQUENCE)
    check = (f"(SELECT COUNT(*) AS n, COUNT({seq}) AS present, COUNT(DISTINCT {seq}) AS uniq, MIN({seq}) AS lo, "
             f"MAX({seq}) AS hi FROM ({sql}) parity_scan) parity_check")
    with driver_errors():
        rows, present, distinct, lo, hi = session.read.format("jdbc").options(**{**options, "dbtable": check}).load() \
            .collect()[0]
    column = reader.source.sequence
    if present != rows:
        raise DataError(f"{where}: sequence column {column!r} is null in {rows - present:,} rows; it must hold a value "
                        f"for every row")
    if distinct != present:
        raise DataError(f"{where}: sequence column {column!r} repeats values; it must be unique, like an "
                        f"auto-increment or serial id")
    return (int(lo), int(hi)) if rows else (0, 0)


class JdbcRows:
    """A PostgreSQL or MySQL/MariaDB table read by Spark over JDBC, with the local reader's own
    SELECT (its type table: each column read as the same expression, handed over as the same wire
    type) and normalized on the executors by the same rule. The ingestion order is selected as a
    column (a declared sequence, else a row number over the table's order); a table with a declared
    sequence is read in ranges of it, one connection each (without one, in one connection: a row
    number is the table's whole order). The visibility window is applied on the executors (a JDBC
    query takes no bind parameters, and none is spliced into SQL)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader  # connectors.sql_source.SQLSourceBase

    def describe(self) -> str:
        return f"{self.reader.describe()} read by Spark over JDBC"

    def rows(self, session: Session, request: ScanRequest, skipped: Any, part_of: PartOf) -> DataFrame:
        import dataclasses

        from pyspark.sql.pandas.types import from_arrow_schema

        from parity.connectors.sql_source import NUMBERED
        from parity.semantics.visibility import Window

        reader, source, where = self.reader, self.reader.source, self.describe()
        whole = dataclasses.replace(request, window=Window())
        plan = reader._resolve(whole, reader._load_columns_cached(refresh=True), NUMBERED)
        sql, params = reader.scan_sql(whole, plan, numbered=True, style=NUMBERED)
        assert not params  # no window: nothing to bind
        renamed, wires = reader._request_for(request, plan)
        scheme, driver, package, jar = JDBC_DRIVERS["postgresql" if source.kind == "postgres" else "mysql"]
        options = {"driver": driver, "dbtable": f"({sql}) parity_scan", "preferTimestampNTZ": "true",
                   "fetchsize": "10000", **_jdbc_connection(reader, scheme)}
        if source.sequence:  # split by the sequence into ranges, one connection each
            lo, hi = _sequence_bounds(session, options, sql, reader, where)
            if hi > lo:
                options.update(partitionColumn=SEQUENCE, lowerBound=str(lo), upperBound=str(hi + 1),
                               numPartitions=str(max(1, 2 * session.sparkContext.defaultParallelism)))
        try:
            raw = session.read.format("jdbc").options(**options).load()
        except Exception as exc:  # noqa: BLE001 - the JVM's error; a missing driver is the usual one
            text = reader.secret.redact(one_line(str(exc)))
            if "ClassNotFoundException" in text or "No suitable driver" in text:
                raise DataError(f"{where}: Spark has no JDBC driver {driver}: apt-get install {package} (its jar, "
                                f"{jar}, is added to new sessions), or add the jar to spark.jars") from None
            raise DataError(f"{where}: {text[:400]}") from None
        raw_arrow = arrow_schema(raw)
        target = _with_part(normalize(_empty(raw_arrow).lazy(), source, renamed, where, wires).rows.to_arrow().schema)

        def normalized(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                got = pl.from_arrow(batch)
                assert isinstance(got, pl.DataFrame)
                scan = normalize(got.lazy(), source, renamed, where, wires)
                if scan.no_event_time:  # keyed by the batch's first row: a batch computed twice counts once
                    skipped.add({got[SEQUENCE].min(): scan.no_event_time})
                yield from _tagged(scan.rows, part_of, target)

        return raw.mapInArrow(carried_iter(normalized), from_arrow_schema(target))


class DriverRows:
    """A source scanned by its local reader on the driver, its normalized rows handed to Spark."""

    def __init__(self, reader: SourceReader) -> None:
        self.reader = reader

    def describe(self) -> str:
        return self.reader.describe() + " (scanned on the driver)"

    def rows(self, session: Session, request: ScanRequest, skipped: Any, part_of: PartOf) -> DataFrame:
        from pyspark.sql.pandas.types import from_arrow_schema

        scan = self.reader.scan(request)
        if scan.no_event_time:
            skipped.add({"driver": scan.no_event_time})
        target = _with_part(scan.rows.to_arrow().schema)
        return session.createDataFrame(pa.Table.from_batches(list(_tagged(scan.rows, part_of, target)), target),
                                       schema=from_arrow_schema(target))
