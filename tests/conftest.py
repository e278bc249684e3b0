"""Shared fixtures, and the hypothesis profiles: in CI (``CI=true``) a fixed, derandomized run —
the same examples every time, so a red build is reproducible; locally a random one (set
``HYPOTHESIS_PROFILE=ci`` to reproduce CI, or ``=deep`` for ten times the examples)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import parity as pt
from tests.support import small_definitions, write_payments, write_users

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True)
settings.register_profile("deep", deadline=None, print_blob=True, max_examples=1000)
_in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if _in_ci else "dev"))


@pytest.fixture
def small_project(tmp_path):  # type: ignore[no-untyped-def]
    write_users(str(tmp_path / "users.parquet"))
    write_payments(str(tmp_path / "payments.parquet"))
    project = pt.Project.from_definitions(
        small_definitions(str(tmp_path)), root=str(tmp_path),
        online_store_path=str(tmp_path / "online.db"), registry_path=str(tmp_path / "registry.db"),
    )
    yield project
    project.close()
