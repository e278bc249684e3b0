"""A source read by a cluster (Apache Spark), as the distributed offline engine sees it.

A ``DistributedRows`` hands the engine a Spark DataFrame of the rows a ``ScanRequest`` asks for,
exactly as a local scan would return them (``ports.source``): the connector's own normalization
runs on the executors, batch by batch, so a value is read the same way on every path.

Two rules every Spark path shares live here too: how an Arrow schema crosses into Spark (Spark
takes no large or view types, and a returned batch must match its declared schema exactly), and how
a parity error raised on an executor comes back to the driver as itself, one line, not as a JVM
stack trace.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from parity import errors
from parity.ports.source import ScanRequest

DataFrame = Any  # pyspark.sql.DataFrame: pyspark is an optional dependency (parity[spark])
Session = Any  # pyspark.sql.SparkSession
T = TypeVar("T")

_MARK = "PARITY-ERROR"
_CARRIED = re.compile(_MARK + r"\[(\w+)\]<<([A-Za-z0-9+/=]*)>>")  # the message base64-encoded: any text survives


PART = "__parity_part"  # a row's key partition (``semantics.partitions``), as the engine co-groups by it
PartOf = Callable[[Any], Any]  # the normalized rows (a Polars frame) -> each row's partition (Int64 Series)


class DistributedRows(Protocol):
    def rows(self, session: Session, request: ScanRequest, skipped: Any, part_of: PartOf) -> DataFrame:
        """The request's rows (its columns, ``ordering.EVENT``, ``CREATED``, ``SEQUENCE``), lazily,
        each with its key partition in ``PART`` (``part_of`` of the normalized rows, computed in the
        same pass on the executors); rows without an event time are left out and counted into
        ``skipped`` (a ``Keyed`` accumulator: {where counted: rows})."""
        ...

    def describe(self) -> str: ...


class Keyed:
    """A Spark accumulator of values keyed by where they were made (a batch's first row, say):
    merged by key, so a batch that Spark computes twice (a sort samples its input by running it,
    a retried task runs again) counts once. Its value is a dict; sum or pick from its values."""

    def zero(self, value: dict[Any, Any]) -> dict[Any, Any]:
        return {}

    def addInPlace(self, a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:  # Spark's AccumulatorParam names it
        a.update(b)
        return a


def spark_type(arrow: pa.DataType) -> pa.DataType:
    """The Arrow type Spark takes for ``arrow`` (large and view strings/lists as their plain forms)."""
    if pa.types.is_large_string(arrow) or pa.types.is_string_view(arrow):
        return pa.string()
    if pa.types.is_large_binary(arrow) or pa.types.is_binary_view(arrow):
        return pa.binary()
    if pa.types.is_large_list(arrow) or pa.types.is_list(arrow) or pa.types.is_list_view(arrow):
        return pa.list_(spark_type(arrow.value_type))
    if pa.types.is_unsigned_integer(arrow):  # Spark has no unsigned integers; canonical keys fit Int64
        return pa.int64()
    if pa.types.is_timestamp(arrow):
        return pa.timestamp("us", arrow.tz)
    return arrow


def spark_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, spark_type(f.type)) for f in schema])


def arrow_schema(frame: DataFrame) -> pa.Schema:
    """A Spark frame's schema as the Arrow its batches arrive in (times as UTC instants)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(frame.schema, timezone="UTC")


def to_spark(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table``'s columns in the order and exact types of ``schema`` (what Spark checks). Times
    finer than a microsecond are cut to it (Spark holds microseconds); a value Spark cannot hold
    (an unsigned integer past Int64) is an error naming its column."""
    import pyarrow.compute as pc

    columns = []
    for f in schema:
        column = table.column(f.name)
        try:
            fine = pa.types.is_timestamp(column.type) and column.type.unit == "ns"
            columns.append(pc.cast(column, f.type, safe=not fine))
        except pa.ArrowException as exc:  # a value out of range, or a cast Arrow has no kernel for
            raise errors.DataError(f"column {f.name!r}: a {column.type} value Spark cannot hold as {f.type} "
                                   f"({str(exc).splitlines()[0][:200]})") from None
    return pa.Table.from_arrays(columns, schema=schema)


def _carry(exc: errors.ParityError) -> str:
    import base64

    return f"{_MARK}[{type(exc).__name__}]<<{base64.b64encode(str(exc).encode()).decode()}>> {exc}"


def carried(fn: Callable[[T, T], T]) -> Callable[[T, T], T]:
    """``fn`` (of a co-group's two sides, as Spark inspects it) for an executor: a parity error it
    raises travels to the driver, type and message."""

    def run(left: T, right: T) -> T:
        try:
            return fn(left, right)
        except errors.ParityError as exc:
            raise RuntimeError(_carry(exc)) from None

    return run


def carried_one(fn: Callable[[T], T]) -> Callable[[T], T]:
    """``carried`` for a grouped UDF of one frame (Spark inspects the arity)."""

    def run(table: T) -> T:
        try:
            return fn(table)
        except errors.ParityError as exc:
            raise RuntimeError(_carry(exc)) from None

    return run


def carried_iter(fn: Callable[[Iterator[T]], Iterator[T]]) -> Callable[[Iterator[T]], Iterator[T]]:
    def run(batches: Iterator[T]) -> Iterator[T]:
        try:
            yield from fn(batches)
        except errors.ParityError as exc:
            raise RuntimeError(_carry(exc)) from None

    return run


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """Re-raise a parity error that an executor raised (carried in Spark's error) as itself."""
    try:
        yield
    except Exception as exc:  # Spark wraps what an executor raised in its own errors
        found = _CARRIED.search(str(exc))
        if found is None:
            if type(exc).__module__.split(".")[0] not in ("pyspark", "py4j"):
                raise
            # Spark's own failure (a lost executor, memory, a path): one line, credentials removed
            from parity.ports.secret import redact_credentials

            if "No module named 'parity'" in str(exc):
                raise errors.ConfigError("the executors' Python cannot import parity: install parity (the same version "
                                         "as here) in it, or point spark.pyspark.python / PYSPARK_PYTHON at a Python "
                                         "that has it") from None
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("at ")]
            raise errors.ParityError(redact_credentials(f"Spark failed: {' '.join(lines[:2])[:400]}")) from None
        import base64

        kind = getattr(errors, found.group(1), errors.ParityError)
        message = base64.b64decode(found.group(2)).decode()
        if not (isinstance(kind, type) and issubclass(kind, errors.ParityError)):
            kind = errors.ParityError
        raise _rebuilt(kind, message) from None


def _rebuilt(kind: type[errors.ParityError], message: str) -> errors.ParityError:
    """The executor's error as its own type on the driver (whatever its constructor takes)."""
    error = Exception.__new__(kind)
    Exception.__init__(error, message)
    if isinstance(error, errors.DefinitionError):
        error.location = None  # the message already says where
    return error
