"""Bad input on the command line: one line naming what was wrong and where, exit status 2, and
nothing left behind (issue 6, "Bad input"). Each case runs ``parity`` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap

import polars as pl
import pytest

FEATURES = "transaction.amount,transaction.user.country"


def parity(*args: str, cwd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parity", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def files(root: str) -> set[str]:
    out = set()
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        out.update(os.path.relpath(os.path.join(folder, n), root) for n in names)
    return out


PROGRESS = re.compile(r"^\[\s*\d+\.\d+s\] ")  # progress lines ("[   0.35s] spine: 2 rows ...") are not the error


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def template(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("bad")
    made = parity("init", "fraud", "--users", "60", cwd=str(root))
    assert made.returncode == 0, made.stderr
    project = str(root / "fraud")
    assert parity("apply", cwd=project).returncode == 0
    return project


@pytest.fixture
def project(template, tmp_path):  # type: ignore[no-untyped-def]
    target = str(tmp_path / "fraud")
    shutil.copytree(template, target)
    return target


def _write_spine_variants(project: str) -> dict[str, str]:
    good = os.path.join(project, "data", "labels.parquet")
    data = open(good, "rb").read()
    variants = {
        "empty.parquet": b"",
        "truncated.parquet": data[: len(data) // 2],
        "random.parquet": os.urandom(2048),
        "labels.csv": b"transaction_id,timestamp\nt1,2024-01-01T00:00:00Z\n",
    }
    for name, content in variants.items():
        with open(os.path.join(project, name), "wb") as fh:
            fh.write(content)
    os.makedirs(os.path.join(project, "a_folder"))
    return {"empty.parquet": "empty (0 bytes)", "truncated.parquet": "not a readable Parquet file",
            "random.parquet": "not a readable Parquet file", "labels.csv": "not a readable Parquet file",
            "a_folder": "is a folder"}


def test_bad_spine_files(project):
    for spine, message in _write_spine_variants(project).items():
        before = files(project)
        result = parity("training-set", "--spine", spine, "--features", FEATURES, "--out", "ts.parquet", cwd=project)
        assert_refused(result, spine, message)
        assert files(project) == before, spine


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--timezone", "Nowhere/Land"], ["'Nowhere/Land' is not a known time zone"]),
        (["--key-column", "user_id"], ["--key-column 'user_id'", "KEY=COLUMN"]),
        (["--out", "missing/ts.parquet"], ["--out 'missing/ts.parquet'", "does not exist"]),
        (["--out", "data"], ["--out 'data' is a folder"]),
        (["--features", "transaction.amount,transaction.amount"], ["requested more than once"]),
    ],
    ids=["zone", "key-column", "out-missing-folder", "out-folder", "duplicate-feature"],
)
def test_bad_training_set_options(project, extra, needles):
    args = {"--spine": "data/labels.parquet", "--features": FEATURES, "--out": "ts.parquet"}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    before = files(project)
    result = parity("training-set", *(x for kv in args.items() for x in kv), cwd=project)
    assert_refused(result, *needles)
    assert files(project) == before


def test_partial_file_of_a_killed_run_is_removed_by_the_next(project):
    stale = os.path.join(project, "ts.parquet.partial-999999")  # a writer that is gone (SIGKILL)
    open(stale, "wb").write(b"half a file")
    result = parity("training-set", "--spine", "data/labels.parquet", "--features", FEATURES, "--out", "ts.parquet",
                    cwd=project)
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(stale) and os.path.exists(os.path.join(project, "ts.parquet"))
    assert not [f for f in os.listdir(project) if ".partial" in f]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_partial_file_is_removed_on_sigint_and_sigterm(tmp_path, signum):
    out = str(tmp_path / "ts.parquet")
    code = textwrap.dedent(f"""
        import os, signal
        from parity.cli.partial import PartialFile
        with PartialFile({out!r}) as partial:
            open(partial.path, "wb").write(b"half")
            os.kill(os.getpid(), {int(signum)})
            raise SystemExit("not reached")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert os.listdir(tmp_path) == []


def test_corrupt_and_locked_online_store(project):
    store = os.path.join(project, ".parity", "online.db")
    assert parity("materialize", cwd=project).returncode == 0
    holder = sqlite3.connect(store, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing
    try:
        assert_refused(parity("materialize", "--full", "-q", cwd=project), ".parity/online.db", "write lock")
    finally:
        holder.rollback()
        holder.close()
    for name in os.listdir(os.path.dirname(store)):
        if name.startswith("online.db"):
            os.remove(os.path.join(os.path.dirname(store), name))
    open(store, "wb").write(os.urandom(4096))
    assert_refused(parity("query", "--features", FEATURES, "--entity", "transaction_id=t00000001", cwd=project),
                   "online.db", "not a SQLite database")


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ('[project]\nname = "x"\ndefinitions = 42\n', ["definitions must be a string", "42"]),
        ('project = "x"\n', ["'project' must be a table"]),
        ('[project\nname = "x"\n', ["parity.toml"]),
    ],
    ids=["definitions-number", "project-string", "not-toml"],
)
def test_bad_parity_toml(project, toml, needles):
    open(os.path.join(project, "parity.toml"), "w").write(toml)
    assert_refused(parity("apply", cwd=project), *needles)


def test_bad_init(tmp_path):
    open(tmp_path / "a_file", "w").write("x")
    before = files(str(tmp_path))
    assert_refused(parity("init", "a_file", cwd=str(tmp_path)), "is a file")
    assert_refused(parity("init", "new", "--users", "-5", cwd=str(tmp_path)), "--users -5")
    assert files(str(tmp_path)) == before


def test_empty_entities_give_an_empty_answer(project):
    assert parity("materialize", cwd=project).returncode == 0
    empty = parity("query", "--features", FEATURES, "--entities", "[]", cwd=project)
    assert empty.returncode == 0 and json.loads(empty.stdout) == []


def _tiny_project(root: str, definitions: str) -> str:
    os.makedirs(root, exist_ok=True)
    open(os.path.join(root, "parity.toml"), "w").write('[project]\nname = "tiny"\ndefinitions = "defs.py"\n')
    open(os.path.join(root, "defs.py"), "w").write(textwrap.dedent(definitions))
    spine = pl.DataFrame({"user_id": [1, 2]}).with_columns(
        timestamp=pl.lit("2024-01-02T00:00:00").str.to_datetime(time_zone="UTC"))
    spine.write_parquet(os.path.join(root, "spine.parquet"))
    return root


SQLITE_DEFS = """
import parity as pt
user = pt.Entity("user", keys={{"user_id": pt.Int64}})
src = pt.SQLiteSource("s", database={db!r}, table="t", event_time="ts")
v = pt.FeatureView("v", entity=user, source=src, features=[pt.Feature("x", pt.String)])
"""


def _sqlite_db(path: str, value: object) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (user_id INTEGER, ts TEXT, x TEXT)")
    con.execute("INSERT INTO t VALUES (1, '2024-01-01T00:00:00+00:00', ?)", (value,))
    con.commit()
    con.close()


def test_sqlite_text_that_is_not_utf8(tmp_path):
    root = _tiny_project(str(tmp_path / "p"), SQLITE_DEFS.format(db="db.sqlite"))
    con = sqlite3.connect(os.path.join(root, "db.sqlite"))
    con.execute("CREATE TABLE t (user_id INTEGER, ts TEXT, x TEXT)")
    con.execute("INSERT INTO t VALUES (1, '2024-01-01T00:00:00+00:00', CAST(X'C328' AS TEXT))")
    con.commit()
    con.close()
    before = files(root)
    result = parity("training-set", "--spine", "spine.parquet", "--features", "user.x", "--out", "ts.parquet", cwd=root)
    assert_refused(result, "column 'x'", "rowid 1", "not valid UTF-8")
    assert files(root) == before


def test_sqlite_paths_with_percent_and_hash_are_read_not_created(tmp_path):
    folder = tmp_path / "p"
    odd = folder / "data%41#1"
    odd.mkdir(parents=True)
    _sqlite_db(str(odd / "db.sqlite"), "found")
    root = _tiny_project(str(folder), SQLITE_DEFS.format(db="data%41#1/db.sqlite"))
    ok = parity("training-set", "--spine", "spine.parquet", "--features", "user.x", "--out", "ts.parquet", cwd=root)
    assert ok.returncode == 0, ok.stderr
    assert pl.read_parquet(os.path.join(root, "ts.parquet"))["user.x"].to_list() == ["found", None]
    missing = _tiny_project(str(tmp_path / "q"), SQLITE_DEFS.format(db="nope%41#/db.sqlite"))
    before = files(missing)
    result = parity("training-set", "--spine", "spine.parquet", "--features", "user.x", "--out", "ts.parquet",
                    cwd=missing)
    assert_refused(result, "does not exist")
    assert files(missing) == before  # the read-only part of the URI was not cut off


def test_duckdb_schema_qualified_table(tmp_path):
    import duckdb

    root = _tiny_project(str(tmp_path / "p"), """
        import parity as pt
        user = pt.Entity("user", keys={"user_id": pt.Int64})
        src = pt.DuckDBSource("s", database="db.duckdb", table="sales.t", event_time="ts")
        v = pt.FeatureView("v", entity=user, source=src, features=[pt.Feature("x", pt.String)])
    """)
    with duckdb.connect(os.path.join(root, "db.duckdb")) as con:
        con.execute("CREATE SCHEMA sales")
        con.execute("CREATE TABLE sales.t AS SELECT 1::BIGINT AS user_id, TIMESTAMPTZ '2024-01-01 00:00:00+00' AS ts, "
                    "'in a schema' AS x")
    ok = parity("training-set", "--spine", "spine.parquet", "--features", "user.x", "--out", "ts.parquet", cwd=root)
    assert ok.returncode == 0, ok.stderr
    assert pl.read_parquet(os.path.join(root, "ts.parquet"))["user.x"].to_list() == ["in a schema", None]


@pytest.mark.parametrize(
    ("definitions", "needles"),
    [
        ("""
         import parity as pt
         user = pt.Entity("user", keys={"__parity_t": pt.Int64})
         """, ["key '__parity_t'", "defs.py:3"]),
        ("""
         import parity as pt
         user = pt.Entity("user", keys={"user_id": pt.Int64})
         src = pt.ParquetSource("s", path="s.parquet", event_time="ts", timezone="Nowhere/Land")
         """, ["'Nowhere/Land' is not a known time zone", "defs.py:4"]),
        ("""
         import parity as pt
         user = pt.Entity("user", keys={"user_id": pt.Int64})
         src = pt.ParquetSource("s", path="s.parquet", event_time="__parity_ev")
         """, ["'__parity_ev'", "defs.py:4"]),
    ],
    ids=["internal-key-name", "source-zone", "internal-column-name"],
)
def test_bad_definitions(tmp_path, definitions, needles):
    root = _tiny_project(str(tmp_path / "p"), definitions)
    assert_refused(parity("apply", cwd=root), *needles)


def test_query_prints_strict_json_for_nan_and_infinities(tmp_path):
    root = _tiny_project(str(tmp_path / "p"), """
        import parity as pt
        user = pt.Entity("user", keys={"user_id": pt.Int64})
        src = pt.ParquetSource("s", path="s.parquet", event_time="ts")
        v = pt.FeatureView("v", entity=user, source=src, features=[pt.Feature("x", pt.Float64)])
    """)
    pl.DataFrame({"user_id": [1, 2, 3], "x": [float("nan"), float("inf"), float("-inf")]}).with_columns(
        ts=pl.lit("2024-01-01T00:00:00").str.to_datetime(time_zone="UTC")).write_parquet(os.path.join(root, "s.parquet"))
    assert parity("materialize", "--until", "2024-01-02T00:00:00+00:00", cwd=root).returncode == 0
    out = parity("query", "--features", "user.x", "--entities", '[{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]',
                 "--now", "2024-01-02T00:00:00+00:00", cwd=root)
    assert out.returncode == 0, out.stderr

    def refuse(constant: str) -> object:
        raise AssertionError(f"not strict JSON: {constant}")

    assert json.loads(out.stdout, parse_constant=refuse) == [{"user.x": "NaN"}, {"user.x": "Infinity"},
                                                             {"user.x": "-Infinity"}]


def test_entity_keys_of_every_dtype_from_the_command_line(tmp_path):
    root = _tiny_project(str(tmp_path / "p"), """
        import parity as pt
        sensor = pt.Entity("sensor", keys={"sid": pt.Float64, "day": pt.Date, "on": pt.Bool})
        src = pt.ParquetSource("s", path="s.parquet", event_time="ts")
        v = pt.FeatureView("v", entity=sensor, source=src, features=[pt.Feature("x", pt.String)])
    """)
    import datetime as dt

    pl.DataFrame({"sid": [-0.0], "day": [dt.date(2024, 1, 5)], "on": [True], "x": ["found"]}).with_columns(
        ts=pl.lit("2024-01-01T00:00:00").str.to_datetime(time_zone="UTC")).write_parquet(os.path.join(root, "s.parquet"))
    assert parity("materialize", "--until", "2024-01-02T00:00:00+00:00", cwd=root).returncode == 0
    now = "2024-01-02T00:00:00+00:00"
    out = parity("query", "--features", "sensor.x", "--entity", "sid=0.0,day=2024-01-05,on=true", "--now", now, cwd=root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"sensor.x": "found"}]
    via_json = parity("query", "--features", "sensor.x", "--entities", '{"sid": 0, "day": "2024-01-05", "on": true}',
                      "--now", now, cwd=root)
    assert json.loads(via_json.stdout) == [{"sensor.x": "found"}], via_json.stderr
    assert_refused(parity("query", "--features", "sensor.x", "--entity", "sid=0,day=2024-01-05,on=maybe", "--now", now,
                          cwd=root), "key 'on' is a Bool key", "'maybe'")


def test_apply_refuses_a_source_its_features_cannot_read(tmp_path):
    root = _tiny_project(str(tmp_path / "p"), """
        import parity as pt
        user = pt.Entity("user", keys={"user_id": pt.Int64})
        src = pt.ParquetSource("s", path="s.parquet", event_time="flag")
        v = pt.FeatureView("v", entity=user, source=src, features=[pt.Feature("x", pt.Int64)])
    """)
    pl.DataFrame({"user_id": [1], "flag": [True], "x": [1.5]}).write_parquet(os.path.join(root, "s.parquet"))
    before = files(root)
    assert_refused(parity("apply", cwd=root), "column 'flag'", "cannot be an event or created time")
    assert files(root) == before  # nothing recorded
    pl.DataFrame({"user_id": [1], "x": ["1"]}).with_columns(
        flag=pl.lit("2024-01-01T00:00:00").str.to_datetime(time_zone="UTC")).write_parquet(os.path.join(root, "s.parquet"))
    assert_refused(parity("apply", cwd=root), "column 'x'", "cannot be read as Int64")  # text is no Int64
    assert files(root) == before


def test_single_names_where_lists_are_expected(small_project):
    from tests.support import at

    (report,) = small_project.materialize(until=at(7), incremental=False, views="profile")
    assert report.view == "profile"
    assert small_project.query({"user_id": 1}, "user.limit", now=at(7)).rows == [{"user.limit": 300.0}]
