"""Calls under a policy, and secrets in URLs (issue 6, items 12 and 13)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os

import pytest

import parity as pt
from parity.connectors import db_url
from parity.define.resolvers import CallPolicy, CircuitBreaker
from parity.errors import ConfigError
from parity.ports.secret import Secret
from parity.semantics.calls import CallTimeoutError, CircuitOpenError, Guard
from tests.support import at

PASSWORD = "s3cr3t-Pa55"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _fail() -> None:
    raise RuntimeError("down")


# The circuit breaker stayed open forever when its half-open trial call was cancelled.
def test_a_cancelled_trial_call_does_not_wedge_the_breaker():
    clock = Clock()
    guard = Guard("dep", CallPolicy(circuit_breaker=CircuitBreaker(failures=1, reset_after=5)), clock=clock)

    async def scenario() -> str:
        with pytest.raises(RuntimeError):
            await guard.call(_fail)
        with pytest.raises(CircuitOpenError):
            await guard.call(_fail)
        clock.now = 10.0  # half-open: one trial may go
        trial = asyncio.ensure_future(guard.call(lambda: asyncio.sleep(60)))
        await asyncio.sleep(0)
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial

        async def ok() -> str:
            return "answered"

        return await guard.call(ok)  # the next call is the trial now, and it closes the circuit

    assert asyncio.run(scenario()) == "answered"
    assert guard.state == "closed"


# The guard's timeout did not count the time spent waiting for a concurrency slot.
def test_timeout_counts_the_wait_for_a_concurrency_slot():
    guard = Guard("dep", CallPolicy(timeout=0.2, concurrency=1))

    async def scenario() -> None:
        holder = asyncio.ensure_future(guard.call(lambda: asyncio.sleep(0.15)))
        await asyncio.sleep(0)

        async def quick() -> str:
            await asyncio.sleep(0.1)
            return "late"

        # 0.15 s waiting for the slot + 0.1 s of work: past 0.2 s, so it must time out.
        with pytest.raises(CallTimeoutError, match="timed out after 0.2s"):
            await guard.call(quick)
        await holder

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://user:{PASSWORD}/x@127.0.0.1:5432/db", "contains '/'"),
        (f"postgresql://user:{PASSWORD}%zz@127.0.0.1:5432/db", "%XX escape"),
        (f"postgresql://user:{PASSWORD}@127.0.0.1:notaport/db", "invalid host or port"),
        (f"postgresql://user:{PASSWORD}@127.0.0.1:5432", "names no database"),
        (f"mysql://user:{PASSWORD}@127.0.0.1/db", "expected a URL like postgresql://"),
    ],
)
def test_malformed_urls_are_refused_without_the_password(url, problem):
    with pytest.raises(ConfigError, match=problem) as info:
        db_url.parse(Secret(url, "env:PG_URL"), schemes=("postgresql",), example="postgresql://user:pw@host:5432/db")
    assert PASSWORD not in str(info.value) and "env:PG_URL" in str(info.value)


def test_passwords_with_at_signs_and_escapes_are_taken_apart_exactly():
    parsed = db_url.parse(Secret("postgresql://me:p%40ss@w0rd@db.example:6543/app?sslmode=disable", "env:X"),
                          schemes=("postgresql",), example="")
    assert (parsed.user, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "me", "p@ss@w0rd", "db.example", 6543, "app")
    assert parsed.options == (("sslmode", "disable"),)
    assert db_url.parse(Secret(parsed.rebuilt(), "env:X"), schemes=("postgresql",), example="") == parsed


# A lookup against an unreachable database: the error says why (not only TimeoutError), and neither
# it nor psycopg_pool's log lines (captured here, and on stderr) show the password.
def test_unreachable_database_reports_the_cause_and_never_the_password(tmp_path, caplog, capfd):
    os.environ["PARITY_TEST_DOWN_PG"] = f"postgresql://parity:{PASSWORD}@127.0.0.1:1/none"
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    source = pt.PostgresSource("down", table="t", connection="env:PARITY_TEST_DOWN_PG", event_time="ts")
    view = pt.FeatureView("v", entity=user, source=source, features=[pt.Feature("x", pt.String, default="?")],
                          max_staleness=dt.timedelta(0), timeout=1.5)
    project = pt.Project.from_definitions([user, view], root=str(tmp_path), online_store_path=str(tmp_path / "o.db"))
    caplog.set_level(logging.DEBUG)
    try:
        result = project.query({"user_id": [1]}, ["user.x"], now=at(2), with_status=True)
    finally:
        project.close()
    detail = (result.details or [])[0]["user.x"]
    assert (detail.value, detail.status) == ("?", "error")
    assert "timed out" in (detail.error or "") and "refused" in (detail.error or "").lower(), detail.error
    out, err = capfd.readouterr()
    for text in (detail.error or "", out, err, caplog.text):
        assert PASSWORD not in text


def test_multi_line_driver_and_polars_messages_become_one_line():
    import polars as pl
    import psycopg

    from parity.errors import one_line
    from tests.support_services import POSTGRES_URL, require_service

    try:
        pl.Series([dt.datetime(2024, 3, 31, 2, 30)]).dt.replace_time_zone("Europe/Berlin")
    except pl.exceptions.PolarsError as exc:
        polars_text = str(exc)
    assert "\n" in polars_text
    assert one_line(polars_text) == "datetime '2024-03-31 02:30:00' is non-existent in time zone 'Europe/Berlin'. " \
        "You may be able to use `non_existent='null'` to return `null` in this case."
    require_service("postgresql", "127.0.0.1", 5432)
    with psycopg.connect(POSTGRES_URL) as con:
        try:
            con.execute("SELECT nope FROM (SELECT 1 AS yes) t")
        except psycopg.Error as exc:
            pg_text = str(exc)
    assert "LINE 1" in pg_text and "\n" in pg_text
    condensed = one_line(pg_text)
    assert "\n" not in condensed and "LINE" not in condensed and 'column "nope" does not exist' in condensed
