"""Shared fixtures."""

from __future__ import annotations

import pytest

import parity as pt
from tests.support import small_definitions, write_payments, write_users


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
