"""Faults: a slow, failing or garbage-returning HTTP API, and a PostgreSQL server stopped and
restarted by PID. The features depending on the failing part get their default (or null) with
status "error"; the rest of the answer comes back; the process recovers when the service does."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import polars as pl
import pytest

import parity as pt
from tests.integration.mysql_fixtures import mysql_table  # noqa: F401 - fixture
from tests.integration.pg_fixtures import pg_table  # noqa: F401 - fixture
from tests.support import at
from tests.support_services import POSTGRES_URL, start_service, stop_by_pid


class RiskApi:
    """A small local HTTP service: /risk answers, /slow hangs, /garbage is not JSON, /flaky fails first."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.flaky_failures = 2
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                api.calls[url.path] = api.calls.get(url.path, 0) + 1
                user = int(parse_qs(url.query).get("user", ["0"])[0])
                if url.path == "/slow":
                    time.sleep(2.0)
                if url.path == "/flaky" and api.calls[url.path] <= api.flaky_failures:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = b"<html>oops</html>" if url.path == "/garbage" else json.dumps({"score": user / 10}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def api():  # type: ignore[no-untyped-def]
    server = RiskApi()
    yield server
    server.close()


def _project(tmp_path, api: RiskApi, path: str, **policy):  # type: ignore[no-untyped-def]
    pl.DataFrame({"user_id": [1, 2], "ts": [at(1), at(1)], "plan": ["gold", "free"]}).write_parquet(tmp_path / "u.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("accounts", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                          features=[pt.Feature("plan", pt.String)])

    @pt.resolver(entity=user, outputs=pt.Feature("risk", pt.Float64, default=-1.0), **policy)
    async def risk(plan: str | None, http) -> float:  # type: ignore[no-untyped-def]
        user_id = 1 if plan == "gold" else 2
        return (await http.get_json(f"{api.url}{path}", params={"user": user_id}))["score"]

    project = pt.Project.from_definitions([user, view, risk], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"))
    project.materialize(until=at(2), incremental=False)
    return project


def _ask(project):  # type: ignore[no-untyped-def]
    return project.query({"user_id": [1, 2]}, ["user.risk", "user.plan"], now=at(2), with_status=True)


def test_http_resolver_answers(tmp_path, api):
    project = _project(tmp_path, api, "/risk", timeout=2.0)
    result = _ask(project)
    assert result.rows == [{"user.risk": 0.1, "user.plan": "gold"}, {"user.risk": 0.2, "user.plan": "free"}]
    # the same function offline, with now = the spine time
    table = project.training_set(pl.DataFrame({"user_id": [2], "timestamp": [at(2)]}), ["user.risk"])
    assert table.column("user.risk").to_pylist() == [0.2]
    project.close()


def test_slow_api_times_out_with_the_default_and_the_rest_still_answers(tmp_path, api):
    project = _project(tmp_path, api, "/slow", timeout=0.3)
    result = _ask(project)
    for row, details in zip(result.rows, result.details):
        assert row["user.risk"] == -1.0 and details["user.risk"].status == "error"
        assert "timed out" in details["user.risk"].error
        assert details["user.plan"].status == "present"
    assert result.rows[0]["user.plan"] == "gold"
    project.close()


def test_garbage_body_is_an_error_status(tmp_path, api):
    project = _project(tmp_path, api, "/garbage", timeout=2.0)
    details = _ask(project).details[0]["user.risk"]
    assert details.status == "error" and "not JSON" in details.error
    project.close()


def test_retries_with_backoff_recover_from_transient_failures(tmp_path, api):
    project = _project(tmp_path, api, "/flaky", timeout=5.0, retries=3, backoff=0.01, concurrency=1)
    result = project.query({"user_id": [1]}, ["user.risk"], now=at(2), with_status=True)
    assert result.rows[0]["user.risk"] == 0.1 and result.details[0]["user.risk"].status == "present"
    assert api.calls["/flaky"] == 3  # two 503s, then the answer
    project.close()


def test_non_idempotent_calls_are_not_retried(tmp_path, api):
    project = _project(tmp_path, api, "/flaky", timeout=5.0, retries=3, idempotent=False, concurrency=1)
    assert project.query({"user_id": [1]}, ["user.risk"], now=at(2), with_status=True).details[0]["user.risk"].status == "error"
    assert api.calls["/flaky"] == 1
    project.close()


def test_circuit_breaker_fails_fast_then_recovers(tmp_path, api):
    breaker = pt.CircuitBreaker(failures=2, reset_after=0.5)
    api.flaky_failures = 2
    project = _project(tmp_path, api, "/flaky", timeout=2.0, circuit_breaker=breaker, concurrency=1)
    for _ in range(2):
        assert project.query({"user_id": [1]}, ["user.risk"], now=at(2), with_status=True).details[0]["user.risk"].status == "error"
    calls = api.calls["/flaky"]
    opened = project.query({"user_id": [1]}, ["user.risk"], now=at(2), with_status=True).details[0]["user.risk"]
    assert opened.status == "error" and "circuit open" in opened.error
    assert api.calls["/flaky"] == calls  # failed fast: the API was not called
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        value = project.query({"user_id": [1]}, ["user.risk"], now=at(2), with_status=True).details[0]["user.risk"]
        if value.status == "present":
            break
    assert value.status == "present" and value.value == 0.1  # half-open trial succeeded, circuit closed
    project.close()


# -- PostgreSQL stopped and restarted by PID ---------------------------------------------------

def _postmaster_pid() -> int:
    import psycopg

    with psycopg.connect(POSTGRES_URL) as con:
        data_dir = con.execute("SHOW data_directory").fetchone()[0]
    with open(os.path.join(data_dir, "postmaster.pid")) as fh:
        return int(fh.readline())


def test_postgres_down_then_back(tmp_path, pg_table):
    pg_table.insert([(1, at(1), at(1), "DE", 1.0)])
    pl.DataFrame({"user_id": [1], "ts": [at(1)], "plan": ["gold"]}).write_parquet(tmp_path / "u.parquet")
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    live = pt.FeatureView(
        "profile", entity=user, max_staleness=dt.timedelta(0), timeout=1.0,
        source=pt.PostgresSource("users_db", table=pg_table.name, connection="env:PARITY_IT_PG",
                                 event_time="updated_at", sequence="id"),
        features=[pt.Feature("country", pt.String, default="??")],
    )
    stored = pt.FeatureView("accounts", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                            features=[pt.Feature("plan", pt.String)])
    project = pt.Project.from_definitions([user, live, stored], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"))
    project.materialize(until=at(2), views=["accounts"], incremental=False)
    features = ["user.country", "user.plan"]
    assert project.query({"user_id": [1]}, features, now=at(2)).rows[0] == {"user.country": "DE", "user.plan": "gold"}

    stop_by_pid(_postmaster_pid(), signal.SIGINT, 5432)  # fast shutdown of exactly this server
    try:
        down = project.query({"user_id": [1]}, features, now=at(2), with_status=True)
        assert down.rows[0] == {"user.country": "??", "user.plan": "gold"}
        assert down.details[0]["user.country"].status == "error"
        assert "postgresql://" not in down.details[0]["user.country"].error  # no connection string leaks
    finally:
        start_service("postgresql", 5432)
    deadline = time.monotonic() + 30
    recovered = None
    while time.monotonic() < deadline:
        recovered = project.query({"user_id": [1]}, features, now=at(2), with_status=True)
        if recovered.details[0]["user.country"].status == "present":
            break
        time.sleep(0.5)
    assert recovered is not None and recovered.rows[0] == {"user.country": "DE", "user.plan": "gold"}
    project.close()


# -- MariaDB stopped and restarted by PID --------------------------------------------------------

def _mariadb_pid() -> int:
    import pymysql

    con = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database="test")
    try:
        with con.cursor() as cur:
            cur.execute("SELECT @@pid_file")
            (pid_file,) = cur.fetchone()
    finally:
        con.close()
    with open(pid_file) as fh:
        return int(fh.read().strip())


def test_mariadb_down_then_back(tmp_path, mysql_table):
    mysql_table.insert([(1, at(1), at(1), "DE", 1.0)])
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    live = pt.FeatureView(
        "profile", entity=user, max_staleness=dt.timedelta(0), timeout=1.0,
        source=pt.MySQLSource("users_db", table=mysql_table.name, connection="env:PARITY_IT_MYSQL",
                              event_time="updated_at", sequence="id", timezone="UTC"),
        features=[pt.Feature("country", pt.String, default="??")],
    )

    @pt.resolver(entity=user, outputs=pt.Feature("hour", pt.Int64))
    def hour(now) -> int:  # type: ignore[no-untyped-def]
        return now.hour

    project = pt.Project.from_definitions([user, live, hour], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"))
    features = ["user.country", "user.hour"]
    assert project.query({"user_id": [1]}, features, now=at(2, 3)).rows[0] == {"user.country": "DE", "user.hour": 3}
    stop_by_pid(_mariadb_pid(), signal.SIGTERM, 3306)
    try:
        down = project.query({"user_id": [1]}, features, now=at(2, 3), with_status=True)
        assert down.rows[0] == {"user.country": "??", "user.hour": 3}
        assert down.details[0]["user.country"].status == "error"
        assert "mysql://" not in down.details[0]["user.country"].error
    finally:
        start_service("mariadb", 3306)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        back = project.query({"user_id": [1]}, features, now=at(2, 3), with_status=True)
        if back.details[0]["user.country"].status == "present":
            break
        time.sleep(0.5)
    assert back.rows[0] == {"user.country": "DE", "user.hour": 3}
    project.close()
