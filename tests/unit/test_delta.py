"""Delta Lake sources: the version read (latest, or pinned), partition columns from the log,
ingestion order by the files' add order, and the tables that are refused rather than misread.
The conformance suite (tests/conformance/test_sources.py, kind "delta") runs every case on them,
locally, in key partitions and on Spark."""

from __future__ import annotations

import sys
import time

import polars as pl
import pytest
from tests.support import at

import parity as pt
from parity.errors import ConfigError, DataError, MissingExtraError

user = pt.Entity("user", keys={"user_id": pt.Int64})
SPINE = pl.DataFrame({"user_id": list(range(4)), "timestamp": [at(3)] * 4})


def _commit(path: str, rows: pl.DataFrame, **kwargs: object) -> None:
    from deltalake import write_deltalake

    write_deltalake(path, rows.to_arrow(), mode="append", **kwargs)  # type: ignore[arg-type]
    time.sleep(0.002)  # the add times order the files (ms)


def _rows(users: list[int], hour: int, amount: float, region: str = "eu") -> pl.DataFrame:
    return pl.DataFrame({"user_id": users, "ts": [at(1, hour)] * len(users), "amount": [amount + u for u in users],
                         "region": [region] * len(users)}, schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"),
                                                                    "amount": pl.Float64, "region": pl.String})


def _project(tmp_path, version: int | None = None) -> pt.Project:  # type: ignore[no-untyped-def]
    view = pt.FeatureView("v", entity=user, source=pt.DeltaSource("t", path="t", event_time="ts", version=version),
                          features=[pt.Feature("amount", pt.Float64), pt.Feature("region", pt.String)])
    return pt.Project.from_definitions([user, view], root=str(tmp_path))


def _answers(project: pt.Project, partitions: int = 1) -> list[tuple[object, object]]:
    table = project.training_set(SPINE, ["user.amount", "user.region"], partitions=partitions)
    return list(zip(table.column("user.amount").to_pylist(), table.column("user.region").to_pylist()))


def test_the_latest_version_is_read_each_time_and_a_pinned_one_stays(tmp_path) -> None:
    """A partition column (region) is read from the log as a feature; a row tied with an earlier
    commit's row (same key, same event time) is the later one; a project sees a new commit on its
    next training set, while a source pinned to a version keeps answering from that version."""
    path = str(tmp_path / "t")
    _commit(path, _rows([0, 1, 2], 5, 10.0), partition_by=["region"])
    _commit(path, _rows([1], 5, 100.0, "us"), partition_by=["region"])  # ties user 1's row: ingested later, wins
    with _project(tmp_path) as latest, _project(tmp_path, version=0) as pinned:
        assert _answers(latest) == [(10.0, "eu"), (101.0, "us"), (12.0, "eu"), (None, None)]
        assert _answers(latest, partitions=3) == _answers(latest)
        _commit(path, _rows([3], 6, 1000.0, "apac"), partition_by=["region"])
        assert _answers(latest) == [(10.0, "eu"), (101.0, "us"), (12.0, "eu"), (1003.0, "apac")]
        assert _answers(pinned) == _answers(pinned, partitions=2) == [(10.0, "eu"), (11.0, "eu"), (12.0, "eu"),
                                                                       (None, None)]


def test_partition_values_that_need_escaping_in_file_names_are_read_as_they_are(tmp_path) -> None:
    """The log URI-encodes the file paths it lists (a space, a percent sign, a slash or an accent
    in a partition value): the files are found, and the values read, as written."""
    regions = ["a b%c/d", "é=x", "%2520"]
    for u, region in enumerate(regions):
        _commit(str(tmp_path / "t"), _rows([u], 5, 10.0, region), partition_by=["region"])
    with _project(tmp_path) as project:
        assert _answers(project) == [(10.0, "a b%c/d"), (11.0, "é=x"), (12.0, "%2520"), (None, None)]
        assert _answers(project, partitions=2) == _answers(project)


def test_tables_whose_rows_are_not_all_in_their_files_are_refused(tmp_path) -> None:
    """Deletion vectors and column mapping would make the files say other rows or other names
    than the table: refused with what to do, never read as they stand."""
    from deltalake import DeltaTable

    path = str(tmp_path / "t")
    _commit(path, _rows([0, 1, 2], 5, 10.0), configuration={"delta.columnMapping.mode": "name"})
    with _project(tmp_path) as project, pytest.raises(DataError, match=r"its columns are mapped \('name'\)"):
        _answers(project)
    other = tmp_path / "dv"
    other.mkdir()
    _commit(str(other / "t"), _rows([0, 1, 2], 5, 10.0), configuration={"delta.enableDeletionVectors": "true"})
    table = DeltaTable(str(other / "t"))
    table.delete("user_id = 1")
    deleted_by_vector = pl.DataFrame(table.deletion_vectors().read_all()).height > 0
    with _project(other) as project:
        if deleted_by_vector:  # delta-rs rewrites the file instead when it cannot write a vector
            with pytest.raises(DataError, match="deleted by deletion vectors"):
                _answers(project)
        else:
            assert _answers(project) == [(10.0, "eu"), (None, None), (12.0, "eu"), (None, None)]


def test_a_missing_table_a_cluster_path_and_a_missing_extra_are_said_in_one_line(tmp_path, monkeypatch) -> None:
    with _project(tmp_path) as project, pytest.raises(DataError, match=r"delta source 't' \(t\): cannot read it as "
                                                                       r"a Delta table: .*source defined at .*test_delta"):
        _answers(project)
    view = pt.FeatureView("v", entity=user, source=pt.DeltaSource("t", path="s3://bucket/t", event_time="ts"),
                          features=[pt.Feature("amount", pt.Float64)])
    with pt.Project.from_definitions([user, view], root=str(tmp_path)) as project, \
            pytest.raises(ConfigError, match="read from a local path for now"):
        project.training_set(SPINE, ["user.amount"])
    _commit(str(tmp_path / "t"), _rows([0], 5, 1.0))
    monkeypatch.setitem(sys.modules, "deltalake", None)
    with _project(tmp_path) as project, pytest.raises(MissingExtraError, match=r'pip install "parity\[delta\]"'):
        _answers(project)
