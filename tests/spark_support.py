"""The Spark session of the test suite: one ``local[2]`` session per test process, started on
first use. In CI a missing Spark (the ``spark`` extra, or Java) fails the test; elsewhere it skips
and says how to install it. And the comparison of a Spark training set with a local one: every
feature and status column bit for bit; the spine's columns as Spark holds them (Spark has no large
strings, no unsigned integers and no times finer than a microsecond)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pyarrow as pa
import pytest

from tests.support import assert_same_table

_SESSION: list[Any] = []


def spark() -> Any:
    if _SESSION:
        return _SESSION[0]
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if in_ci:
            raise
        pytest.skip('Spark is not installed: pip install -e ".[spark]" (and Java 17+)')
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if in_ci:
            raise RuntimeError("Spark needs Java 17+: apt-get install openjdk-17-jre-headless")
        pytest.skip("Spark needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    from parity.runtime.spark import session

    _SESSION.append(session("local[2]", [("spark.sql.shuffle.partitions", "2"), ("spark.default.parallelism", "2"),
                                         ("spark.ui.enabled", "false"), ("spark.driver.memory", "2g")]))
    return _SESSION[0]


def assert_same_as_local(got: pa.Table, want: pa.Table, spine_columns: list[str], what: str) -> None:
    """A Spark training set equals the local one: the features and statuses bit for bit, the
    metadata equal, and the spine's columns equal once cast to the types Spark holds them in."""
    from parity.ports.distributed import spark_type

    assert got.column_names == want.column_names, what
    held = [(f.name, spark_type(f.type)) for f in want.select(spine_columns).schema]
    spark_spine = pa.schema([(name, pa.timestamp("us", "UTC") if pa.types.is_timestamp(t) and t.tz else t)
                             for name, t in held])
    assert got.select(spine_columns).schema == spark_spine, what
    assert got.select(spine_columns).equals(want.select(spine_columns).cast(spark_spine)), f"{what}: spine columns"
    features = [c for c in want.column_names if c not in spine_columns]
    assert_same_table(got.select(features), want.select(features), what)
    assert got.schema.metadata == want.schema.metadata, f"{what}: {got.schema.metadata} != {want.schema.metadata}"
