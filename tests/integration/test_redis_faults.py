"""The Redis online store stopped (by PID) and restarted: store-backed features fail with their
default and status "error", everything else still answers, and serving recovers."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid

import polars as pl

import parity as pt
from tests.support import at
from tests.support_services import REDIS_URL, require_service, start_service, stop_by_pid


def _redis_pid() -> int:
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "info", "server"], capture_output=True,
                         text=True, check=True).stdout
    return int(next(line.split(":")[1] for line in out.splitlines() if line.startswith("process_id:")))


def test_redis_down_then_back(tmp_path):
    require_service("redis", "127.0.0.1", 6379)
    pl.DataFrame({"user_id": [1], "ts": [at(1)], "plan": ["gold"]}).write_parquet(tmp_path / "u.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("accounts", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                          features=[pt.Feature("plan", pt.String, default="basic")])

    @pt.resolver(entity=user, outputs=pt.Feature("hour", pt.Int64))
    def hour(now) -> int:  # type: ignore[no-untyped-def]
        return now.hour

    namespace = f"fault-{uuid.uuid4().hex}"
    project = pt.Project.from_definitions([user, view, hour], root=str(tmp_path), online_store_type="redis",
                                          online_store_url=REDIS_URL, online_store_namespace=namespace)
    project.materialize(until=at(2), incremental=False)
    features = ["user.plan", "user.hour"]
    assert project.query({"user_id": [1]}, features, now=at(2, 5)).rows[0] == {"user.plan": "gold", "user.hour": 5}

    stop_by_pid(_redis_pid(), signal.SIGTERM, 6379)
    try:
        down = project.query({"user_id": [1]}, features, now=at(2, 5), with_status=True)
        assert down.rows[0] == {"user.plan": "basic", "user.hour": 5}
        assert down.details[0]["user.plan"].status == "error" and "Redis" in down.details[0]["user.plan"].error
        assert down.details[0]["user.hour"].status == "present"
    finally:
        start_service("redis", 6379)
    # Redis keeps nothing on disk: after the restart the value is missing (no error), and a
    # materialization brings it back.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        back = project.query({"user_id": [1]}, features, now=at(2, 5), with_status=True)
        if back.details[0]["user.plan"].status != "error":
            break
        time.sleep(0.2)
    assert back.details[0]["user.plan"].status == "missing"
    project.materialize(until=at(2), incremental=False)
    assert project.query({"user_id": [1]}, features, now=at(2, 5)).rows[0] == {"user.plan": "gold", "user.hour": 5}
    project.close()
