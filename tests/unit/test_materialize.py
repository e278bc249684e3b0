import polars as pl

import parity as pt
from tests.support import at


def _project(tmp_path, rows):
    pl.DataFrame(rows, schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "cr": pl.Datetime("us", "UTC"),
                               "x": pl.Int64}, orient="row").write_parquet(tmp_path / "s.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("v", entity=user, source=pt.ParquetSource("s", path="s.parquet", event_time="ts", created_time="cr"),
                          features=[pt.Feature("x", pt.Int64)])
    return pt.Project.from_definitions([user, view], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"),
                                       registry_path=str(tmp_path / "r.db"))


def _x(project, now):
    return project.query({"user_id": [1]}, ["user.x"], now=now).rows[0]["user.x"]


def test_incremental_reads_only_what_became_visible(tmp_path):
    p = _project(tmp_path, [(1, at(1), at(1), 10), (1, at(3), at(3), 30)])
    first = p.materialize(until=at(2))[0]
    assert (first.rows_read, first.incremental_from_us) == (1, None)
    assert _x(p, at(2)) == 10
    second = p.materialize(until=at(4))[0]
    assert second.rows_read == 1 and second.incremental_from_us is not None
    assert _x(p, at(4)) == 30
    assert p.materialize(until=at(4))[0].rows_read == 0  # nothing new
    p.close()


def test_late_row_never_overwrites_a_newer_value(tmp_path):
    # The day-2 row reaches the warehouse on day 5, after the day-3 row was served.
    p = _project(tmp_path, [(1, at(3), at(3), 30), (1, at(2), at(5), 20)])
    p.materialize(until=at(4))
    assert _x(p, at(4)) == 30
    report = p.materialize(until=at(6))[0]
    assert report.rows_read == 1 and report.written == 0  # the backfill was kept out
    assert _x(p, at(6)) == 30
    p.materialize(until=at(6), incremental=False)  # a full re-run cannot go back either
    assert _x(p, at(6)) == 30
    p.close()


def test_created_time_decides_visibility_online_as_offline(tmp_path):
    # A correction with event day 2 arrives on day 5: at day 4 the old value is served, at day 6 the correction.
    p = _project(tmp_path, [(1, at(1), at(1), 10), (1, at(2), at(5), 20)])
    p.materialize(until=at(4))
    assert _x(p, at(4)) == 10
    p.materialize(until=at(6))
    assert _x(p, at(6)) == 20
    spine = pl.DataFrame({"user_id": [1, 1], "timestamp": [at(4), at(6)]})
    assert p.training_set(spine, ["user.x"]).column("user.x").to_pylist() == [10, 20]
    p.close()


def test_apply_never_resets_the_watermark(tmp_path):
    p = _project(tmp_path, [(1, at(1), at(1), 10), (1, at(3), at(3), 30)])
    p.materialize(until=at(2))
    p.apply()
    again = _project(tmp_path, [(1, at(1), at(1), 10), (1, at(3), at(3), 30)])
    again.apply()
    report = again.materialize(until=at(4))[0]
    assert report.incremental_from_us is not None and report.rows_read == 1
    p.close()
    again.close()


def test_event_time_ties_go_to_the_later_created_row_then_the_later_row(tmp_path):
    # Same event time: the greater created time wins even when it comes first in the file;
    # with equal created times the later row wins. Online as offline.
    p = _project(tmp_path, [(1, at(1), at(3), 30), (1, at(1), at(2), 20), (2, at(1), at(2), 5), (2, at(1), at(2), 6)])
    p.materialize(until=at(4), incremental=False)
    spine = pl.DataFrame({"user_id": [1, 2], "timestamp": [at(4), at(4)]})
    assert p.training_set(spine, ["user.x"]).column("user.x").to_pylist() == [30, 6]
    assert p.query({"user_id": [1, 2]}, ["user.x"], now=at(4)).column("user.x") == [30, 6]
    p.close()
