"""The ``parity`` command end to end on the bundled example (small data), in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest

FEATURES = "transaction.amount,transaction.user.account_age_days,transaction.is_foreign,transaction.user.countries_30d"


def parity(*args: str, cwd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "parity", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"parity {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    parity("init", "fraud", "--users", "120", cwd=str(root))
    return str(root / "fraud")


def test_apply_then_reapply_reports_changes(project):
    first = parity("apply", cwd=project).stdout
    assert "38 added" in first and "+ transaction.is_foreign" in first and "+ card.txn_count[10m]" in first
    assert "0 added, 0 changed" in parity("apply", cwd=project).stdout
    path = os.path.join(project, "features", "resolvers.py")
    code = open(path).read()
    open(path, "w").write(code.replace("return home != where", "return home.upper() != where.upper()"))
    changed = parity("apply", "--dry-run", cwd=project).stdout
    assert "~ transaction.is_foreign" in changed and "1 changed" in changed
    open(path, "w").write(code)


def test_training_set_materialize_and_query_agree(project):
    parity("training-set", "--spine", "data/labels.parquet", "--features", FEATURES, "--out", "ts.parquet", cwd=project)
    table = pl.read_parquet(os.path.join(project, "ts.parquet"))
    labels = pl.read_parquet(os.path.join(project, "data", "labels.parquet"))
    assert table.height == labels.height and table["transaction_id"].to_list() == labels["transaction_id"].to_list()
    assert table["transaction.amount"].null_count() == 0

    last = table.sort("timestamp").tail(1).row(0, named=True)
    now = last["timestamp"].isoformat()
    parity("materialize", "--until", now, cwd=project)
    out = parity("query", "--features", FEATURES, "--entity", f"transaction_id={last['transaction_id']}", "--now", now,
                 "--status", cwd=project).stdout
    answer = json.loads(out)[0]
    for ref in FEATURES.split(","):
        assert answer[ref]["value"] == last[ref], ref
    assert answer["transaction.amount"]["status"] == "present"


def test_explain_prints_the_plan(project):
    out = parity("explain", "transaction.is_foreign", cwd=project).stdout
    assert "lookup transaction.user [user by transaction.user_id] view user_profile: country" in out
    assert "resolve transaction [transaction] is_foreign(" in out


def test_errors_exit_2_with_one_clear_line(project):
    bad = parity("query", "--features", "transaction.amont", "--entity", "transaction_id=t1", cwd=project, check=False)
    assert bad.returncode == 2
    assert "did you mean 'transaction.amount'" in bad.stderr and "Traceback" not in bad.stderr
    naive = parity("materialize", "--until", "2025-01-01T00:00:00", cwd=project, check=False)
    assert naive.returncode == 2 and "no time zone" in naive.stderr
    elsewhere = parity("apply", cwd=os.path.dirname(project), check=False)
    assert elsewhere.returncode == 2 and "parity init" in elsewhere.stderr
