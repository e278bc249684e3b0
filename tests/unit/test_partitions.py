"""Key partitions: how many a source is read in (from the memory budget and what the source says of
its size), the settings that decide it, and that a run in partitions answers as a run without."""

from __future__ import annotations

import datetime as dt
import tempfile

import polars as pl
import pytest
from tests.support import assert_same_table, at

import parity as pt
from parity.errors import ConfigError, DataError
from parity.runtime.partitioning import BYTES_PER_ROW, partitions_for
from parity.runtime.settings import load_settings

DEFS = """
import parity as pt
user = pt.Entity("user", keys={"user_id": pt.Int64})
profile = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                         features=[pt.Feature("amount", pt.Float64)])
ledger = pt.FeatureView("ledger", entity=user, source=pt.DuckDBSource("l", database="l.duckdb", table="l", event_time="ts"),
                        features=[pt.Feature("balance", pt.Float64)])
"""


def _project(tmp_path, offline: str = "") -> pt.Project:  # type: ignore[no-untyped-def]
    import duckdb

    (tmp_path / "parity.toml").write_text(f'[project]\nname = "t"\ndefinitions = "defs.py"\n{offline}')
    (tmp_path / "defs.py").write_text(DEFS)
    pl.DataFrame({"user_id": [u % 7 for u in range(40)], "ts": [at(1, u % 24) for u in range(40)],
                  "amount": [u + 0.5 for u in range(40)]}).write_parquet(tmp_path / "u.parquet")
    with duckdb.connect(str(tmp_path / "l.duckdb")) as db:
        db.execute("CREATE TABLE l AS SELECT range % 7 AS user_id, TIMESTAMPTZ '2024-01-01 00:00:00+00' + "
                   "INTERVAL (range) MINUTE AS ts, range * 1.5 AS balance FROM range(30)")
    return pt.Project.load(str(tmp_path))


def test_the_budget_sets_the_partitions_of_each_source_by_its_own_size(tmp_path):
    with _project(tmp_path, '[offline]\nmemory_budget = "2KB"\n') as project:
        assert project.settings.offline_memory_budget == 2_000
        parquet, duckdb_source = (project.catalog.views[v].source for v in ("profile", "ledger"))
        assert partitions_for(parquet, project._reader, 2_000) == -(-40 * BYTES_PER_ROW // 2_000) == 6
        assert partitions_for(duckdb_source, project._reader, 2_000) == 1  # cannot tell its size: read whole
        assert partitions_for(parquet, project._reader, 10**9) == 1
        spine = pl.DataFrame({"user_id": list(range(8)) * 2, "timestamp": [at(1, 6)] * 8 + [at(2)] * 8})
        said: list[str] = []
        refs = ["user.amount", "user.balance"]
        auto = project.training_set(spine, refs, with_status=True, progress=said.append)
        parts = [m.split(":")[1].strip() for m in said if ": partition " in m]
        assert parts == [f"partition {i}/6" for i in range(1, 7)]  # the Parquet source in 6, the DuckDB one whole
        assert all(m.startswith("profile: ") for m in said if ": partition " in m)
        assert_same_table(auto, project.training_set(spine, refs, with_status=True, partitions=1), "auto partitions")
        parted = project.materialize(until=at(3), incremental=False)  # first: the store holds its rows alone
        online = project.query({"user_id": list(range(8))}, refs, now=at(3)).rows
        offline = project.training_set(pl.DataFrame({"user_id": list(range(8)), "timestamp": [at(3)] * 8}), refs)
        assert online == offline.select(refs).to_pylist()  # what the partitioned run stored is the as-of row
        whole = project.materialize(until=at(3), incremental=False, partitions=1)
        assert [(r.rows_read, r.keys) for r in whole] == [(r.rows_read, r.keys) for r in parted] == [(40, 7), (30, 7)]  # type: ignore[union-attr]
        with pytest.raises(DataError, match="partitions=0: give a whole number"):
            project.materialize(partitions=0)
        with pytest.raises(DataError, match="partitions=0: give a whole number"):
            project.training_set(spine, refs, partitions=0)


@pytest.mark.parametrize("offline,message", [
    ('memory_budget = "lots"', "offline.memory_budget 'lots' must be a size"),
    ('memory_budget = "inf"', "offline.memory_budget 'inf' must be a size"),
    ("memory_budget = 0", "offline.memory_budget 0 must be a size"),
    ("partitions = 0", "offline.partitions 0 must be a whole number of 1 or more"),
    ('partitions = "4"', "offline.partitions '4' must be a whole number"),
    ("spill = true", "[offline] has no setting 'spill'"),
])
def test_offline_settings_are_checked(tmp_path, offline, message):
    (tmp_path / "parity.toml").write_text(f'[project]\nname = "t"\ndefinitions = "defs.py"\n[offline]\n{offline}\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(str(tmp_path))
    assert message in str(caught.value)


def test_sizes_are_read_in_decimal_and_binary_units(tmp_path):
    for text, size in [('"4GB"', 4 * 10**9), ('"4G"', 4 * 10**9), ('"512MiB"', 512 * 2**20), ("1000000", 10**6)]:
        (tmp_path / "parity.toml").write_text(f'[project]\nname = "t"\ndefinitions = "d.py"\n[offline]\nmemory_budget = {text}\n')
        assert load_settings(str(tmp_path)).offline_memory_budget == size, text


def test_a_partitioned_lookup_reads_the_features_once_and_still_checks_rows_never_chosen(tmp_path):
    """Over a Parquet source, each partition reads only keys and times; the features are read in
    one more pass, of the chosen rows alone. A value that cannot be read is refused all the same,
    with the error of the run without partitions, even in a row that no probe chooses."""
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("visits", entity=user, source=pt.ParquetSource("v", path=str(tmp_path / "v.parquet"),
                                                                          event_time="ts"),
                          features=[pt.Feature("visits", pt.Int64)])
    visits = [float(u) for u in range(40)]

    def write() -> None:
        pl.DataFrame({"user_id": [u % 7 for u in range(40)], "ts": [at(1, u % 24) for u in range(40)],
                      "visits": visits}).write_parquet(tmp_path / "v.parquet")

    write()
    spine = pl.DataFrame({"user_id": list(range(8)) * 2, "timestamp": [at(1, 6)] * 8 + [at(2)] * 8})
    with pt.Project.from_definitions([user, view], root=str(tmp_path)) as project:
        said: list[str] = []
        parted = project.training_set(spine, ["user.visits"], with_status=True, partitions=3, progress=said.append)
        assert_same_table(parted, project.training_set(spine, ["user.visits"], with_status=True, partitions=1), "parted")
        assert [m for m in said if "chosen rows" in m] == ["visits: read the features of the 14 chosen rows"]
        visits[0] = 0.5  # row 0 (user 0 at hour 0) is superseded by row 7 (hour 7) for every probe
        write()
        errors = []
        for partitions in (1, 3):
            with pytest.raises(DataError) as caught:
                project.training_set(spine, ["user.visits"], partitions=partitions)
            errors.append(str(caught.value))
        assert errors[0] == errors[1] and "column 'visits', row 0: value 0.5" in errors[0]


@pytest.mark.parametrize("rewritten,found", [
    (pl.DataFrame({"user_id": [1], "ts": [at(1)], "amount": [9.5]}), 0),  # fewer rows
    (pl.DataFrame({"user_id": [(u + 1) % 7 for u in range(40)], "ts": [at(1, u % 24) for u in range(40)],
                   "amount": [u + 0.5 for u in range(40)]}), 7),  # as many rows, at the same places, other keys
    (pl.DataFrame({"user_id": [u % 7 for u in range(40)], "ts": [at(1, u % 24) + dt.timedelta(hours=1) for u in range(40)],
                   "amount": [u + 0.5 for u in range(40)]}), 7),  # the same keys, each event an hour later
])
def test_a_source_rewritten_between_the_passes_of_a_partitioned_lookup_is_refused(tmp_path, rewritten, found):
    """The rows chosen by position in the key passes must be the rows the feature pass reads: a
    file replaced in between is said, not answered from the wrong rows."""
    with _project(tmp_path) as project:
        spine = pl.DataFrame({"user_id": list(range(8)), "timestamp": [at(2)] * 8})

        def rewrite(message: str) -> None:
            if message.startswith("profile: partition 2/2"):
                rewritten.write_parquet(tmp_path / "u.parquet")

        with pytest.raises(DataError, match=rf"changed while profile was read \(7 rows chosen, {found} found again\); run"):
            project.training_set(spine, ["user.amount"], partitions=2, progress=rewrite)


def test_the_window_test_partition_counts_split_its_keys():
    """tests/properties/test_windows.py materializes in 5 and 7 partitions because they split its
    keys 1, 2 and 3 apart (2 would not: all three hash to partition 0)."""
    from parity.semantics.partitions import partition_of

    keys = pl.DataFrame({"k": [1, 2, 3]})
    for count in (5, 7):
        assert keys.select(partition_of({"k": pt.Int64}, count)).to_series().n_unique() == 3


def _one_view(tmp_path, rows: pl.DataFrame) -> pt.Project:  # type: ignore[no-untyped-def]
    rows.write_parquet(tmp_path / "v.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("v", entity=user, source=pt.ParquetSource("v", path=str(tmp_path / "v.parquet"), event_time="ts"),
                          features=[pt.Feature("amount", pt.Float64)])
    return pt.Project.from_definitions([user, view], root=str(tmp_path))


@pytest.mark.parametrize("partitions", [2, 3, 5, 7])
def test_source_rows_without_a_key_do_not_shift_the_rows_a_partition_chooses(tmp_path, partitions):
    """Rows with a null key never match, and are dropped before the as-of choice: the chosen
    places are in the rows kept, not the rows read (a row every fifth, in the partitions of the
    probes too)."""
    n = 120
    rows = pl.DataFrame({"user_id": [None if u % 5 == 0 else u % 7 for u in range(n)],
                         "ts": [at(1, u % 24) for u in range(n)], "amount": [u + 0.5 for u in range(n)]},
                        schema={"user_id": pl.Int64, "ts": pl.Datetime("us", "UTC"), "amount": pl.Float64})
    spine = pl.DataFrame({"user_id": list(range(8)) * 3, "timestamp": [at(1, 5)] * 8 + [at(1, 13)] * 8 + [at(2)] * 8})
    with _one_view(tmp_path, rows) as project:
        whole = project.training_set(spine, ["user.amount"], with_status=True, partitions=1)
        assert_same_table(project.training_set(spine, ["user.amount"], with_status=True, partitions=partitions),
                          whole, f"{partitions} partitions")
        assert 3 <= whole.column("user.amount").null_count < 12  # user 7 never; most others found


def test_the_first_bad_value_is_the_one_a_run_without_partitions_names(tmp_path):
    """Two event times that cannot be read, in rows whose keys fall in different partitions: every
    partition count names the earlier row, as one scan of the whole source does."""
    ts: list[str] = [at(1, u % 24).isoformat() for u in range(40)]
    ts[4] = ts[30] = "garbage"  # users 4 and 2
    rows = pl.DataFrame({"user_id": [u % 7 for u in range(40)], "ts": ts, "amount": [u + 0.5 for u in range(40)]})
    spine = pl.DataFrame({"user_id": list(range(7)), "timestamp": [at(2)] * 7})
    with _one_view(tmp_path, rows) as project:
        errors = set()
        for partitions in (1, 2, 3, 5):
            with pytest.raises(DataError) as caught:
                project.training_set(spine, ["user.amount"], partitions=partitions)
            errors.add(str(caught.value))
        assert len(errors) == 1 and "column 'ts', row 4: value 'garbage'" in errors.pop()


def test_a_temporary_folder_whose_name_reads_as_a_pattern_still_holds_the_partitions(tmp_path, monkeypatch):
    """The partition files are found by their folder's name taken literally, not as a glob."""
    odd = tmp_path / "tmp[1]*?"
    odd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(odd))
    rows = pl.DataFrame({"user_id": [u % 7 for u in range(40)], "ts": [at(1, u % 24) for u in range(40)],
                         "amount": [u + 0.5 for u in range(40)]})
    spine = pl.DataFrame({"user_id": list(range(7)), "timestamp": [at(2)] * 7})
    with _one_view(tmp_path, rows) as project:
        parted = project.training_set(spine, ["user.amount"], with_status=True, partitions=3)
        assert_same_table(parted, project.training_set(spine, ["user.amount"], with_status=True, partitions=1), "odd")
        assert parted.column("user.amount").null_count == 0
    assert list(odd.iterdir()) == []  # and removed once the step is done


def test_a_window_index_is_rebuilt_in_as_many_partitions_as_its_budget_needs(tmp_path):
    """A window index's rebuild holds ~700 bytes an event, not a scan's 256: the budget gives it
    more partitions, and the index it builds is the one built whole."""
    from parity.runtime.partitioning import BYTES_PER_WINDOW_EVENT

    (tmp_path / "parity.toml").write_text('[project]\nname = "t"\ndefinitions = "defs.py"\n[offline]\nmemory_budget = "20KB"\n')
    (tmp_path / "defs.py").write_text(
        "import parity as pt\n"
        "user = pt.Entity('user', keys={'user_id': pt.Int64})\n"
        "spend = pt.WindowView('spend', entity=user, source=pt.ParquetSource('e', path='e.parquet', event_time='ts'),\n"
        "    windows=['1h', '1d'], columns={'amount': pt.Float64},\n"
        "    features=[pt.Aggregate('n', pt.agg.count()), pt.Aggregate('total', pt.agg.sum('amount'))])\n")
    pl.DataFrame({"user_id": [u % 9 for u in range(100)], "ts": [at(1, u % 24) for u in range(100)],
                  "amount": [u + 0.25 for u in range(100)]}).write_parquet(tmp_path / "e.parquet")
    refs = [f"user.{f}[{w}]" for f in ("n", "total") for w in ("1h", "1d")]
    with pt.Project.load(str(tmp_path)) as project:
        said: list[str] = []
        project.materialize(until=at(2), progress=said.append)
        wanted = -(-100 * BYTES_PER_WINDOW_EVENT // 20_000)
        assert [m for m in said if ": partition " in m][-1].startswith(f"spend: partition {wanted}/{wanted}: ")
        parted = project.query({"user_id": list(range(10))}, refs, now=at(1, 23)).rows
        project.materialize(until=at(2), partitions=1)
        assert project.query({"user_id": list(range(10))}, refs, now=at(1, 23)).rows == parted
        assert parted[0]["user.n[1d]"] == 12  # user 0: rows 0, 9, ..., 99


def test_partition_files_that_cannot_be_written_are_said_in_one_line(tmp_path, monkeypatch):
    """The key partitions go to the temporary folder: one that cannot be made, or that cannot
    hold them, is named with the fix, and nothing is answered."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    rows = pl.DataFrame({"user_id": [u % 7 for u in range(40)], "ts": [at(1, u % 24) for u in range(40)],
                         "amount": [u + 0.5 for u in range(40)]})
    spine = pl.DataFrame({"user_id": [1], "timestamp": [at(2)]})
    with _one_view(tmp_path, rows) as project:
        monkeypatch.setattr(tempfile, "tempdir", str(blocked))
        with pytest.raises(DataError, match=r"^v: cannot make a folder for its key partitions in .*not-a-folder: .*set TMPDIR"):
            project.training_set(spine, ["user.amount"], partitions=2)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

        def full(self, target):  # type: ignore[no-untyped-def]
            raise OSError("No space left on device (os error 28)")

        monkeypatch.setattr(pl.LazyFrame, "sink_ipc", full)
        with pytest.raises(DataError, match=r"cannot write its key partitions to .*: No space left on device .*set TMPDIR"):
            project.training_set(spine, ["user.amount"], partitions=2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("parity-partitions-")]
