"""The live part of the bundled example against the real PostgreSQL, with its HTTP risk API."""

from __future__ import annotations

import subprocess
import sys

from tests.support_services import POSTGRES_URL, require_service


def test_live_example_serves_postgres_and_api_features_with_parity(tmp_path):
    require_service("postgresql", "127.0.0.1", 5432)
    subprocess.run([sys.executable, "-m", "parity", "init", "fraud", "--users", "80"], cwd=tmp_path, check=True,
                   capture_output=True)
    project = tmp_path / "fraud"
    result = subprocess.run([sys.executable, "live.py"], cwd=project, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "PARITY_FRAUD_POSTGRES_URL": POSTGRES_URL})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(PostgreSQL + risk API): 0 mismatches" in result.stdout
    assert '"transaction.user.account_status": [' in result.stdout and '"present"]' in result.stdout
    assert "risk API down: external_risk=0.5 (error" in result.stdout
    assert "postgresql://" not in result.stdout + result.stderr  # the connection string never appears
