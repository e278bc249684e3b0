"""The served-value log: what was served, exactly, for sampled queries; never in the way of one."""

from __future__ import annotations

import datetime as dt
import threading
import time

import orjson
import polars as pl
import pytest

import parity as pt
from parity.connectors.feature_log_parquet import ParquetFeatureLog
from parity.monitor.feature_log import COLUMNS, FeatureLogger
from parity.semantics.wire import from_json
from tests.support import at


def _project(tmp_path, rate: float) -> pt.Project:  # type: ignore[no-untyped-def]
    pl.DataFrame({"user_id": [1, 2], "ts": [at(1), at(1)], "score": [float("nan"), float("-inf")],
                  "seen": [at(1, 5), None], "email": ["a@x.org", "b@y.org"]}).write_parquet(tmp_path / "u.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                          features=[pt.Feature("score", pt.Float64), pt.Feature("seen", pt.Timestamp),
                                    pt.Feature("email", pt.String, tags=["pii"])])
    masker = pt.Role("masker", grants=[pt.Grant(entity="user")], pii="mask")
    project = pt.Project.from_definitions([user, view, masker], root=str(tmp_path),
                                          online_store_path=str(tmp_path / "o.db"), feature_log_sample_rate=rate)
    project.materialize(until=at(2), incremental=False)
    return project


FEATURES = ["user.score", "user.seen", "user.email"]


def test_every_sampled_query_is_logged_as_served_and_reads_back_exactly(tmp_path):
    project = _project(tmp_path, 1.0)
    plain = project.query({"user_id": [1, 2, 3]}, FEATURES, now=at(2), request_id="r-owner")
    masked = project.query([{"user_id": 2}], FEATURES, now=at(2), with_status=True,
                           principal=pt.Principal("svc", ["masker"]))
    assert plain.details is None  # logged with statuses, answered as asked
    project.close()  # a clean shutdown writes what was buffered
    log = pl.from_arrow(ParquetFeatureLog(str(tmp_path)).read())
    assert isinstance(log, pl.DataFrame) and log.columns == list(COLUMNS)
    owner = log.filter(pl.col("request_id") == "r-owner").sort("row")
    assert owner.height == 3 and set(owner["request_time_us"]) == {int(at(2).timestamp() * 1e6)}
    assert owner["principal"].null_count() == 3
    dtypes = {"user.score": "Float64", "user.seen": "Timestamp", "user.email": "String"}
    for row in owner.iter_rows(named=True):
        values = orjson.loads(row["values"])
        assert list(values) == FEATURES
        got = {ref: from_json(v, dtypes[ref]) for ref, v in values.items()}
        assert repr(got) == repr(plain.rows[row["row"]])  # NaN, -inf, a timestamp, a missing entity: as served
        assert orjson.loads(row["entity"]) == {"user_id": [1, 2, 3][row["row"]]}
        versions = orjson.loads(row["versions"])
        assert list(versions) == FEATURES and len(set(versions.values())) == 3
    assert orjson.loads(owner.row(2, named=True)["statuses"]) == dict.fromkeys(FEATURES, "missing")
    svc = log.filter(pl.col("principal") == "svc").row(0, named=True)
    assert orjson.loads(svc["statuses"])["user.email"] == "masked"
    assert orjson.loads(svc["values"])["user.email"] is None  # masked is logged masked: no pii in the log
    assert "b@y.org" not in svc["values"]  # (the owner's own query read it, and has it logged)
    assert masked.details is not None


def test_a_sample_rate_of_zero_logs_nothing(tmp_path):
    (tmp_path / "off").mkdir()
    off = _project(tmp_path / "off", 0.0)
    off.query({"user_id": [1]}, FEATURES, now=at(2))
    assert off.feature_log() is None
    off.close()
    assert not (tmp_path / "off" / ".parity" / "feature_log").exists()


class _Sink:
    def idle(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __init__(self) -> None:
        self.batches: list[dict[str, list[object]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = 0

    def write(self, columns):  # type: ignore[no-untyped-def]
        self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.batches.append({k: list(v) for k, v in columns.items()})


def _record(logger: FeatureLogger, n: int, request_id: str) -> None:
    logger.record([{"k": i} for i in range(n)], ["e.f"], {"e.f": "v1"}, [{"e.f": i} for i in range(n)], None,
                  1, "p", request_id)


def test_a_slow_sink_never_blocks_a_query_and_a_full_buffer_drops_and_counts():
    sink = _Sink()
    sink.gate.clear()  # the sink hangs
    logger = FeatureLogger(sink, sample_rate=1.0, max_rows=10, flush_interval=0.01)
    _record(logger, 4, "a")
    time.sleep(0.05)  # the writer thread took "a" and is stuck in the sink
    started = time.perf_counter()
    for name in "bcd":
        _record(logger, 4, name)  # b and c fit the buffer (8 of 10); d does not: dropped, counted
    assert time.perf_counter() - started < 0.5  # returned at once, the sink still hanging
    assert logger.stats()["dropped"] == 4 and logger.stats()["buffered"] == 8
    sink.gate.set()
    logger.close()
    written = [rid for batch in sink.batches for rid in batch["request_id"]]
    assert sorted(set(written)) == ["a", "b", "c"] and len(written) == 12
    assert logger.stats() | {"sample_rate": 0} == {"written": 12, "dropped": 4, "buffered": 0, "failed_flushes": 0,
                                                   "sample_rate": 0}
    assert [orjson.loads(v) for v in sink.batches[0]["values"]] == [{"e.f": i} for i in range(4)]


def test_a_failing_sink_keeps_its_batch_for_the_next_flush():
    sink = _Sink()
    sink.fail = 2
    logger = FeatureLogger(sink, sample_rate=1.0, max_rows=100, flush_interval=3600)
    _record(logger, 3, "a")
    assert logger.flush() == 0 and logger.flush() == 0  # the disk is full, twice
    _record(logger, 2, "b")
    assert logger.flush() == 5  # then everything, in order
    assert sink.batches[0]["request_id"] == ["a"] * 3 + ["b"] * 2
    assert logger.stats()["failed_flushes"] == 2 and logger.stats()["dropped"] == 0
    logger.close()


def test_the_sample_is_drawn_once_per_query():
    draws = iter([0.01, 0.5, 0.09, 0.99])
    logger = FeatureLogger(_Sink(), sample_rate=0.1, draw=lambda: next(draws))
    assert [logger.sampled() for _ in range(4)] == [True, False, True, False]
    logger.close()
    assert FeatureLogger(_Sink(), sample_rate=0.0).sampled() is False


@pytest.mark.parametrize("rate", ["-0.1", "1.5", "often"])
def test_a_bad_sample_rate_is_a_config_error_naming_it(tmp_path, rate):
    from parity.errors import ConfigError
    from parity.runtime.settings import load_settings

    (tmp_path / "parity.toml").write_text(f'[project]\ndefinitions = "d.py"\n[feature_log]\nsample_rate = "{rate}"\n')
    with pytest.raises(ConfigError, match="feature_log.sample_rate"):
        load_settings(str(tmp_path))


def test_the_log_is_partitioned_by_the_day_it_was_served(tmp_path):
    sink = ParquetFeatureLog(str(tmp_path))
    day = int(dt.datetime(2026, 12, 1, 23, 59, tzinfo=dt.UTC).timestamp() * 1e6)
    row = {name: [day if name == "served_at_us" else 0 if name in ("request_time_us", "row") else "{}"]
           for name in COLUMNS}
    sink.write(row)
    assert sink.read().num_rows == 0  # the part being written is not read half-written
    sink.write(row)  # the same open part: one more row group
    sink.close()
    assert [p.parent.name for p in (tmp_path / ".parity" / "feature_log").rglob("*.parquet")] == ["date=2026-12-01"]
    assert sink.read().num_rows == 2
    next_day = day + 60_000_000
    assert sink.read(since_us=next_day).num_rows == 0  # that day's folder is not even opened
    assert sink.read(since_us=day - 1, until_us=day + 1).num_rows == 2
    assert sink.read(until_us=day - 86_400_000_000).num_rows == 0


def test_only_the_plans_entity_keys_are_logged_not_other_fields_sent_along(tmp_path):
    project = _project(tmp_path, 1.0)
    project.query([{"user_id": 1, "contact": "someone@example.org"}], ["user.score"], now=at(2), request_id="r1")
    project.close()
    log = ParquetFeatureLog(str(tmp_path)).read().to_pylist()
    assert [orjson.loads(r["entity"]) for r in log if r["request_id"] == "r1"] == [{"user_id": 1}]
    assert "someone@example.org" not in repr(log)
    assert project.feature_log() is None  # closed: no new writer starts behind its back


def test_a_batch_the_sink_always_refuses_is_dropped_after_its_tries_and_logging_goes_on():
    from parity.monitor.feature_log import RETRIES

    sink = _Sink()
    sink.fail = RETRIES
    logger = FeatureLogger(sink, sample_rate=1.0, max_rows=100, flush_interval=3600)
    _record(logger, 3, "poison")
    for _ in range(RETRIES):
        assert logger.flush() == 0
    assert logger.stats()["dropped"] == 3 and logger.stats()["buffered"] == 0
    _record(logger, 2, "next")
    assert logger.flush() == 2 and sink.batches[0]["request_id"] == ["next", "next"]
    logger.close()


@pytest.mark.parametrize(("text", "message"), [
    ("sample_rate = true", "feature_log.sample_rate True"),
    ("sample_rte = 0.5", "no setting 'sample_rte'"),
    ("part_seconds = 0", "feature_log.part_seconds"),
    ("max_rows = 0", "feature_log.max_rows"),
])
def test_feature_log_settings_are_checked(tmp_path, text, message):
    from parity.errors import ConfigError
    from parity.runtime.settings import load_settings

    (tmp_path / "parity.toml").write_text(f'[project]\ndefinitions = "d.py"\n[feature_log]\n{text}\n')
    with pytest.raises(ConfigError, match=message):
        load_settings(str(tmp_path))


def test_a_batch_across_midnight_is_filed_under_each_rows_day_and_dead_writers_tmp_parts_go(tmp_path):
    import os

    folder = tmp_path / ".parity" / "feature_log" / "date=2026-11-30"
    folder.mkdir(parents=True)
    orphan, live = folder / ".part-1-2-x-0.parquet.tmp", folder / ".part-3-4-y-0.parquet.tmp"
    orphan.write_bytes(b"half")
    live.write_bytes(b"being written")
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    sink = ParquetFeatureLog(str(tmp_path))
    before = int(dt.datetime(2026, 12, 1, 23, 59, 59, tzinfo=dt.UTC).timestamp() * 1e6)
    after = int(dt.datetime(2026, 12, 2, 0, 0, 1, tzinfo=dt.UTC).timestamp() * 1e6)
    sink.write({name: [before, after] if name == "served_at_us" else [0, 1] if name in ("request_time_us", "row")
                else ["{}", "{}"] for name in COLUMNS})
    sink.close()
    parts = sorted(p.parent.name for p in (tmp_path / ".parity" / "feature_log").rglob("part-*.parquet"))
    assert parts == ["date=2026-12-01", "date=2026-12-02"]
    assert not orphan.exists() and live.exists()  # a dead writer's leftover goes; a live one's stays
    assert sorted(sink.read().column("row").to_pylist()) == [0, 1]
