"""``parity serve`` over loopback, two workers, against a real project: tokens, the access
decision, masked values, bad input as 4xx with codes, and revocation seen by every worker."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import polars as pl
import pytest

from tests.support import at
from tests.e2e.serving import free_port, start_server
from tests.support_services import POSTGRES_URL, REDIS_URL, require_service

DEFS = '''
import parity as pt

user = pt.Entity("user", keys={"user_id": pt.Int64})
profile = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                         features=[pt.Feature("country", pt.String), pt.Feature("limit", pt.Float64),
                                   pt.Feature("email", pt.String, tags=["pii"]), pt.Feature("score", pt.Float64),
                                   pt.Feature("seen", pt.Timestamp), pt.Feature("born", pt.Date)])

@pt.resolver(entity=user, outputs=pt.Feature("email_domain", pt.String))
def domain(email: str | None) -> str | None:
    return None if email is None else email.split("@")[1]

accounts = pt.FeatureView(  # resolved at request time from PostgreSQL (max_staleness 0)
    "accounts", entity=user, max_staleness=__import__("datetime").timedelta(0),
    source=pt.PostgresSource("accounts", table=__import__("os").environ.get("PARITY_SERVED_PG_TABLE", "none"),
                             connection="env:PARITY_SERVED_PG", event_time="updated_at"),
    features=[pt.Feature("status", pt.String), pt.Feature("phone", pt.String, tags=["pii"])])

reading = pt.Entity("reading", keys={"day": pt.Date, "at": pt.Timestamp, "level": pt.Float64})
readings = pt.FeatureView("readings", entity=reading, source=pt.ParquetSource("r", path="r.parquet", event_time="ts"),
                          features=[pt.Feature("value", pt.Float64)])

device = pt.Entity("device", keys={"device_id": pt.String})
pings = pt.StreamSource(name="pings", schema={"id": pt.String, "device_id": pt.String, "ts": pt.Timestamp},
                        event_time="ts", event_id="id")
uptime = pt.WindowView("uptime", entity=device, source=pings, columns={}, windows=["1h"],
                       features=[pt.Aggregate("pings", pt.agg.count())])

scoring = pt.Role("scoring", grants=[pt.Grant(entity="user")], pii="mask", push=["pings"], metrics=True)
sensors = pt.Role("sensors", grants=[pt.Grant(entity="reading")])
support = pt.Role("support", grants=[pt.Grant(features=["user.country"])])
'''



def _parity(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parity", "-C", str(root), *args], capture_output=True, text=True)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def server(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The server over each online store: every test of this module runs against both."""
    root = tmp_path_factory.mktemp("served")
    config = '[project]\nname = "served"\ndefinitions = "defs.py"\n[feature_log]\nsample_rate = 1.0\npart_seconds = 0.5\n'
    if request.param == "redis":
        require_service("redis", "127.0.0.1", 6379)
        config += f'[online_store]\ntype = "redis"\nurl = "{REDIS_URL}"\nnamespace = "served-{uuid.uuid4().hex[:8]}"\n'
    (root / "parity.toml").write_text(config)
    require_service("postgresql", "127.0.0.1", 5432)
    import psycopg

    table = f"parity_served_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f'CREATE TABLE "{table}" (user_id bigint, updated_at timestamptz, status text, phone text)')
        con.execute(f'INSERT INTO "{table}" VALUES (1, %s, %s, %s), (2, %s, %s, %s)',
                    (at(1), "active", "+49 30 1234", at(1), "frozen", "+33 1 9876"))
    os.environ["PARITY_SERVED_PG"], os.environ["PARITY_SERVED_PG_TABLE"] = POSTGRES_URL, table
    (root / "defs.py").write_text(textwrap.dedent(DEFS))
    pl.DataFrame({"user_id": [1, 2], "ts": [at(1), at(1)], "country": ["DE", "FR"], "limit": [10.0, 20.0],
                  "email": ["a@x.org", "b@y.org"], "score": [float("nan"), float("-inf")],
                  "seen": [at(1, 5), None], "born": [__import__("datetime").date(1990, 5, 17), None],
                  }).write_parquet(root / "u.parquet")
    import datetime as _dt

    pl.DataFrame({"day": [_dt.date(2024, 1, 1), _dt.date(2024, 1, 1)], "at": [at(1, 3), at(1, 4)],
                  "level": [float("nan"), 0.5], "ts": [at(1), at(1)], "value": [1.5, 2.5]}).write_parquet(root / "r.parquet")
    assert _parity(root, "materialize", "--until", at(2).isoformat(), "-q").returncode == 0
    tokens = {}
    for role in ("scoring", "support", "sensors"):
        made = _parity(root, "token", "create", "--principal", f"{role}-svc", "--role", role)
        assert made.returncode == 0, made.stderr
        tokens[role] = made.stdout.strip()
    proc, base = start_server(root)
    yield {"root": root, "base": base, "tokens": tokens}
    proc.terminate()
    proc.wait(timeout=20)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f'DROP TABLE IF EXISTS "{table}"')


def _query(server, token: str | None, body: object, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if isinstance(body, bytes):
        return httpx.post(server["base"] + "/v1/query", content=body, headers=headers, **kwargs)
    return httpx.post(server["base"] + "/v1/query", json=body, headers=headers, **kwargs)


QUERY = {"entities": {"user_id": [1, 2]}, "features": ["user.country", "user.email", "user.limit"],
         "now": at(2).isoformat(), "with_status": True}


def test_a_token_reads_what_its_role_grants_with_pii_masked(server):
    answer = _query(server, server["tokens"]["scoring"], QUERY)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["rows"] == [{"user.country": "DE", "user.email": None, "user.limit": 10.0},
                            {"user.country": "FR", "user.email": None, "user.limit": 20.0}]
    assert [d["user.email"]["status"] for d in body["details"]] == ["masked", "masked"]
    assert body["details"][0]["user.country"]["status"] == "present"


def test_a_feature_the_role_does_not_grant_is_a_403_naming_it(server):
    answer = _query(server, server["tokens"]["support"], QUERY)
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "forbidden" and set(error["denied"]) == {"user.email", "user.limit"}
    assert "a@x.org" not in answer.text
    ok = _query(server, server["tokens"]["support"], {**QUERY, "features": ["user.country"]})
    assert ok.json()["rows"] == [{"user.country": "DE"}, {"user.country": "FR"}]


def test_the_catalog_lists_only_what_the_principal_may_request(server):
    def listed(role: str) -> dict[str, str]:
        answer = httpx.get(server["base"] + "/v1/catalog", headers={"Authorization": f"Bearer {server['tokens'][role]}"})
        return {f["feature"]: f["access"] for f in answer.json()["features"]}

    assert listed("support") == {"user.country": "read"}
    assert listed("scoring") == {"user.country": "read", "user.limit": "read", "user.email": "masked",
                                 "user.score": "read", "user.seen": "read", "user.born": "read",
                                 "user.status": "read", "user.phone": "masked"}
    assert httpx.get(server["base"] + "/v1/catalog").status_code == 401


def test_the_catalog_names_only_the_entities_and_sources_of_what_the_principal_may_see(server):
    def catalog(role: str) -> dict[str, object]:
        return dict(httpx.get(server["base"] + "/v1/catalog",
                              headers={"Authorization": f"Bearer {server['tokens'][role]}"}).json())

    support = catalog("support")
    assert support["entities"] == [{"name": "user", "keys": {"user_id": "Int64"}}]
    assert support["sources"] == [{"name": "u", "kind": "ParquetSource", "push": False}]  # not accounts, r, pings
    assert support["features"] == [{"feature": "user.country", "dtype": "String", "version": support["features"][0]["version"],
                                    "kind": "view", "namespace": "profile", "entity": "user", "description": "",
                                    "owner": None, "tags": [], "access": "read", "source": "u"}]
    scoring = catalog("scoring")
    assert [s["name"] for s in scoring["sources"]] == ["accounts", "pings", "u"]  # pings: it may push, not read
    assert next(s for s in scoring["sources"] if s["name"] == "pings") == {"name": "pings", "kind": "StreamSource",
                                                                          "push": True}
    assert {e["name"] for e in scoring["entities"]} == {"user"}
    sensors = catalog("sensors")
    assert sensors["entities"] == [{"name": "reading", "keys": {"day": "Date", "at": "Timestamp", "level": "Float64"}}]


@pytest.mark.parametrize(("token", "body", "status", "code", "field"), [
    (None, QUERY, 401, "unauthenticated", "Authorization"),
    ("pty_notatoken", QUERY, 401, "unauthenticated", "Authorization"),
    ("pty_" + "A" * 36, QUERY, 401, "unauthenticated", "Authorization"),  # well-shaped, wrong checksum
    ("scoring", b"{not json", 400, "bad_json", None),
    ("scoring", b"[1, 2]", 400, "bad_request", None),
    ("scoring", {**QUERY, "features": "user.country"}, 400, "invalid_field", "features"),
    ("scoring", {**QUERY, "features": []}, 400, "invalid_field", "features"),
    ("scoring", {**QUERY, "feature": ["user.country"]}, 400, "invalid_field", "feature"),
    ("scoring", {**QUERY, "features": ["user.countyr"]}, 400, "unknown_feature", "features"),
    ("scoring", {**QUERY, "entities": {"user_id": ["one"]}}, 400, "invalid_entity_key", "entities"),
    ("scoring", {**QUERY, "entities": "user 1"}, 400, "invalid_field", "entities"),
    ("scoring", {**QUERY, "entities": {"user_id": list(range(1001))}}, 413, "too_many_entities", "entities"),
    ("scoring", {**QUERY, "now": "yesterday"}, 400, "invalid_field", "now"),
    ("scoring", {**QUERY, "now": "2026-01-01T00:00:00"}, 400, "invalid_field", "now"),
    ("scoring", {**QUERY, "with_status": "yes"}, 400, "invalid_field", "with_status"),
    ("scoring", {**QUERY, "now": "0001-01-01T00:00:00+14:00"}, 400, "invalid_field", "now"),
    ("scoring", {**QUERY, "now": "9999-12-31T23:59:59-14:00"}, 400, "invalid_field", "now"),
    ("scoring", {**QUERY, "entities": [{"user_id": 1, **{f"k{i}": 0 for i in range(100)}}]}, 400,
     "invalid_entity_key", "entities"),
    ("scoring", b'{"features": ["' + b"x" * (1 << 20) + b'"]}', 413, "body_too_large", None),
])
def test_bad_input_is_a_4xx_with_a_code_and_the_field(server, token, body, status, code, field):
    answer = _query(server, server["tokens"].get(token, token), body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error.get("field") == field
    assert "\n" not in error["message"]
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


def test_unknown_paths_and_methods_answer_json(server):
    assert httpx.get(server["base"] + "/v1/nothing").json()["error"]["code"] == "not_found"
    answer = httpx.get(server["base"] + "/v1/query")
    assert answer.status_code == 405 and answer.json()["error"]["code"] == "method_not_allowed"


def test_tokens_are_stored_as_hashes_only(server):
    path = server["root"] / ".parity" / "tokens.db"
    raw = b"".join(p.read_bytes() for p in path.parent.glob("tokens.db*"))
    for token in server["tokens"].values():
        assert token.encode() not in raw and token[4:].encode() not in raw
    assert os.stat(path).st_mode & 0o077 == 0
    with sqlite3.connect(path) as con:
        assert {r[0] for r in con.execute("SELECT principal FROM tokens")} >= {"scoring-svc", "support-svc"}


def test_a_revoked_token_is_refused_at_once_by_every_worker(server):
    made = _parity(server["root"], "token", "create", "--principal", "temp", "--role", "support")
    token = made.stdout.strip()
    body = {**QUERY, "features": ["user.country"]}
    assert all(_query(server, token, body).status_code == 200 for _ in range(10))  # new connections: both workers
    listed = _parity(server["root"], "token", "list", "--json")
    token_id = next(t["id"] for t in __import__("json").loads(listed.stdout) if t["principal"] == "temp")
    assert _parity(server["root"], "token", "revoke", token_id).returncode == 0
    refused = [_query(server, token, body).status_code for _ in range(20)]
    assert refused == [401] * 20
    again = _parity(server["root"], "token", "revoke", token_id)
    assert again.returncode == 2 and "already revoked" in again.stderr


def test_token_cli_refuses_unknown_roles_with_exit_2(server):
    made = _parity(server["root"], "token", "create", "--principal", "x", "--role", "admin")
    assert made.returncode == 2 and "'admin' is not a role" in made.stderr and made.stdout == ""


def _records(root: Path, *args: str) -> list[dict[str, object]]:
    import json

    found = _parity(root, "audit", "search", *args)
    assert found.returncode == 0, found.stderr
    return [json.loads(line) for line in found.stdout.splitlines()]


def test_every_request_and_token_change_is_in_the_verified_audit_trail(server):
    marker = "user.country"
    _query(server, server["tokens"]["support"], {**QUERY, "features": [marker], "entities": {"user_id": [2, 1]}})
    _query(server, server["tokens"]["support"], QUERY)  # forbidden
    _query(server, None, QUERY)  # no token
    time.sleep(0.5)  # past the group commit (100 ms)
    verified = _parity(server["root"], "audit", "verify")
    assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified.stdout + verified.stderr
    mine = _records(server["root"], "--principal", "support-svc", "--action", "query")
    ok = [r for r in mine if r["outcome"] == "ok" and r["entities"] and len(r["entities"]) == 2]
    assert ok, mine
    record = ok[-1]
    assert record["features"] == [marker] and set(record["versions"]) == {marker} and record["status"] == 200
    assert all(isinstance(e, str) and len(e) == 32 for e in record["entities"])  # keyed hashes, not the keys
    assert record["entities"][0] != record["entities"][1] and record["policy"] and record["token"]
    assert any(r["outcome"] == "forbidden" and r["status"] == 403 for r in mine)
    assert any(r["principal"] == "-" and r["outcome"] == "unauthenticated" for r in _records(server["root"],
                                                                                             "--action", "query"))
    created = _records(server["root"], "--action", "token.create")
    assert {r["for_principal"] for r in created} >= {"scoring-svc", "support-svc"}
    assert all(str(r["principal"]).startswith("os:") for r in created)


def _stamp(i: int) -> str:
    return (at(2) + __import__("datetime").timedelta(minutes=i)).isoformat()


def test_kill_9_of_the_server_loses_only_the_last_group_commit_of_the_trail(tmp_path):
    root = tmp_path
    (root / "parity.toml").write_text('[project]\nname = "crash"\ndefinitions = "defs.py"\n')
    (root / "defs.py").write_text(textwrap.dedent(DEFS))
    pl.DataFrame({"user_id": [1], "ts": [at(1)], "country": ["DE"], "limit": [1.0], "email": ["a@x.org"],
                  "score": [1.0], "seen": [at(1)], "born": [__import__("datetime").date(1990, 5, 17)],
                  }).write_parquet(root / "u.parquet")
    pl.DataFrame({"day": [__import__("datetime").date(2024, 1, 1)], "at": [at(1)], "level": [0.5], "ts": [at(1)],
                  "value": [1.0]}).write_parquet(root / "r.parquet")
    token = _parity(root, "token", "create", "--principal", "p", "--role", "support").stdout.strip()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "parity", "-C", str(root), "serve", "--port", str(port),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = {"base": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base["base"] + "/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
            assert time.monotonic() < deadline
        body = {"entities": {"user_id": [1]}, "features": ["user.country"], "now": at(2).isoformat()}
        with httpx.Client() as client:
            for i in range(50):
                assert client.post(base["base"] + "/v1/query", json={**body, "now": _stamp(i)},
                                   headers={"Authorization": f"Bearer {token}"}).status_code == 200
            answered = time.monotonic()
            time.sleep(0.3)  # older than the flush interval (100 ms) when the crash comes
            for i in range(50, 60):  # answered just before the crash: these may be lost
                client.post(base["base"] + "/v1/query", json={**body, "now": _stamp(i)},
                            headers={"Authorization": f"Bearer {token}"})
        assert time.monotonic() - answered > 0.1
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = {r["now"] for r in _records(root, "--action", "query")}
    assert {_stamp(i) for i in range(50)} <= kept  # nothing older than one group commit is lost
    verified = _parity(root, "audit", "verify")
    assert verified.returncode == 0, verified.stderr  # the tail after the last checkpoint is unsigned, not broken


ALL_READ = ["user.country", "user.limit", "user.email", "user.score", "user.seen", "user.born"]


def test_the_client_answers_what_the_project_answers_bit_for_bit(server):
    import parity as pt

    project = pt.Project.load(str(server["root"]))
    try:
        expected = project.query({"user_id": [1, 2, 3]}, ALL_READ, now=at(2), with_status=True,
                                 principal=pt.Principal("scoring-svc", ["scoring"]))
    finally:
        project.close()
    with pt.Client(server["base"], server["tokens"]["scoring"]) as client:
        got = client.query({"user_id": [1, 2, 3]}, ALL_READ, now=at(2), with_status=True)
        assert [f["feature"] for f in client.catalog()] == sorted(f["feature"] for f in client.catalog())
    assert repr(got) == repr(expected)  # NaN and -inf, times and dates, masked values, statuses, event times
    assert repr(got.rows[0]["user.score"]) == "nan" and got.rows[1]["user.score"] == float("-inf")

    async def asynchronously() -> object:
        async with pt.AsyncClient(server["base"], server["tokens"]["scoring"]) as client:
            return await client.query({"user_id": [1, 2, 3]}, ALL_READ, now=at(2), with_status=True)

    import asyncio

    assert repr(asyncio.run(asynchronously())) == repr(expected)


def test_the_client_raises_the_servers_errors_typed(server):
    import parity as pt
    from parity.errors import AccessDenied, AuthenticationError, RequestError

    with pt.Client(server["base"], server["tokens"]["support"]) as client:
        with pytest.raises(AccessDenied) as denied:
            client.query({"user_id": [1]}, ["user.email"])
        assert set(denied.value.denied) == {"user.email"}
        with pytest.raises(RequestError) as unknown:
            client.query({"user_id": [1]}, ["user.countyr"])
        assert (unknown.value.status, unknown.value.code, unknown.value.field) == (400, "unknown_feature", "features")
    with pt.Client(server["base"], "pty_" + "A" * 36) as client, pytest.raises(AuthenticationError):
        client.query({"user_id": [1]}, ["user.country"])
    with pt.Client(f"http://127.0.0.1:{free_port()}", "t", retries=2, backoff=0.01) as client:
        with pytest.raises(RequestError) as unreachable:
            client.query({"user_id": [1]}, ["user.country"])
        assert unreachable.value.status == 0 and unreachable.value.code == "unreachable"


def _metric(text: str, metric: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") or line.startswith(metric + " "):
            head, _, value = line.rpartition(" ")
            got = head[len(metric):].strip("{}")
            if all(part in got.split(",") for part in want.split(",") if part):
                total += float(value)
    return total


def test_metrics_are_summed_over_the_workers_and_need_a_token(server):
    headers = {"Authorization": f"Bearer {server['tokens']['scoring']}"}
    assert httpx.get(server["base"] + "/v1/metrics").status_code == 401
    refused = httpx.get(server["base"] + "/v1/metrics", headers={"Authorization": f"Bearer {server['tokens']['support']}"})
    assert refused.status_code == 403 and "parity_" not in refused.text  # deny by default: metrics=True only
    before = httpx.get(server["base"] + "/v1/metrics", headers=headers).text
    for _ in range(10):  # a connection each: the two workers share them
        assert _query(server, server["tokens"]["scoring"], QUERY).status_code == 200
    _query(server, server["tokens"]["support"], QUERY)  # one forbidden
    (server["root"] / ".parity" / "freshness").mkdir(parents=True, exist_ok=True)
    (server["root"] / ".parity" / "freshness" / "payments.json").write_text(
        '{"source": "payments", "consumer_lag": 7, "event_to_servable": {"p50_ms": 6.0, "p99_ms": 35.0}}')
    time.sleep(0.3)  # each worker writes what it counted every 100 ms (the one scraped, at once)
    after = httpx.get(server["base"] + "/v1/metrics", headers=headers).text
    ok = "parity_requests_total"
    assert _metric(after, ok, endpoint="query", outcome="ok") - _metric(before, ok, endpoint="query", outcome="ok") == 10
    assert _metric(after, ok, endpoint="query", outcome="forbidden") - _metric(
        before, ok, endpoint="query", outcome="forbidden") == 1
    # with_status answers count values by status: 2 users × 3 features × 10 requests, masked ones apart
    masked = "parity_query_values_total"
    assert _metric(after, masked, status="masked") - _metric(before, masked, status="masked") == 20
    assert _metric(after, "parity_request_duration_seconds_count", endpoint="query") - _metric(
        before, "parity_request_duration_seconds_count", endpoint="query") == 11
    assert _metric(after, "parity_stream_consumer_lag", source="payments") == 7
    assert _metric(after, "parity_stream_event_to_servable_seconds", source="payments", quantile="0.99") == 0.035
    # per step: the online store's lookups of the view, 2 keys per request
    keys = "parity_step_keys_total"
    assert _metric(after, keys, kind="lookup", name="profile") - _metric(before, keys, kind="lookup", name="profile") == 20
    assert _metric(after, "parity_step_duration_seconds_count", kind="lookup", name="profile") - _metric(
        before, "parity_step_duration_seconds_count", kind="lookup", name="profile") == 10
    # a request-time view (max_staleness 0): every key asked of the store is asked of PostgreSQL too
    for _ in range(3):
        assert _query(server, server["tokens"]["scoring"], {**QUERY, "features": ["user.status"]}).status_code == 200
    time.sleep(0.3)
    later = httpx.get(server["base"] + "/v1/metrics", headers=headers).text
    assert _metric(later, keys, kind="source", name="accounts") - _metric(after, keys, kind="source", name="accounts") == 6
    assert _metric(later, keys, kind="lookup", name="accounts") - _metric(after, keys, kind="lookup", name="accounts") == 6
    assert _metric(later, "parity_step_failures_total", kind="source", name="accounts") == 0
    assert _metric(later, "parity_audit_records_total") >= _metric(before, "parity_audit_records_total") + 11


SPINE = {"user_id": [1, 2, 1, 3], "timestamp": [at(2).isoformat(), at(2).isoformat(), at(1).isoformat(),
                                                 at(2).isoformat()], "label": [1, 0, 1, 0]}
TS_FEATURES = ["user.country", "user.email", "user.score", "user.limit"]


def _wait_job(server, token: str, job: dict[str, object]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = httpx.get(f"{server['base']}/v1/training-sets/{job['id']}", headers=headers).json()
    return job


def test_a_training_set_job_gives_what_project_training_set_gives_for_the_principal(server):
    import io

    import parity as pt
    import pyarrow.parquet as pq

    token = server["tokens"]["scoring"]
    headers = {"Authorization": f"Bearer {token}"}
    submitted = httpx.post(server["base"] + "/v1/training-sets", headers=headers,
                           json={"spine": SPINE, "features": TS_FEATURES, "with_status": True})
    assert submitted.status_code == 202, submitted.text
    assert submitted.headers["location"] == f"/v1/training-sets/{submitted.json()['id']}"
    job = _wait_job(server, token, submitted.json())
    assert job["status"] == "done" and job["rows"] == 4, job
    got = pq.read_table(io.BytesIO(httpx.get(f"{server['base']}/v1/training-sets/{job['id']}/result",
                                             headers=headers).content))
    project = pt.Project.load(str(server["root"]))
    try:
        spine = pl.DataFrame({"user_id": SPINE["user_id"], "timestamp": [at(2), at(2), at(1), at(2)],
                              "label": SPINE["label"]})
        expected = project.training_set(spine, TS_FEATURES, with_status=True,
                                        principal=pt.Principal("scoring-svc", ["scoring"]))
    finally:
        project.close()
    assert repr(got.to_pylist()) == repr(expected.to_pylist())
    assert got.column("user.email").null_count == 4 and set(got.column("user.email:status").to_pylist()) == {"masked"}
    # the client does the same with a Parquet spine
    with pt.Client(server["base"], token) as client:
        table = client.training_set(spine, TS_FEATURES, with_status=True)
    assert repr(table.to_pylist()) == repr(expected.to_pylist())
    # another principal's job does not exist for it
    other = {"Authorization": f"Bearer {server['tokens']['support']}"}
    assert httpx.get(f"{server['base']}/v1/training-sets/{job['id']}", headers=other).status_code == 404
    assert httpx.get(f"{server['base']}/v1/training-sets/{job['id']}/result", headers=other).status_code == 404
    assert httpx.get(f"{server['base']}/v1/training-sets/..%2F..%2Ftokens.db", headers=headers).status_code == 404


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"spine": SPINE, "features": ["user.email"]}, 403, "forbidden"),  # refused before any job runs
    ({"spine": SPINE, "features": ["user.countyr"]}, 400, "unknown_feature"),
    ({"spine": {"user_id": [1]}, "features": ["user.country"]}, 400, "invalid_field"),
    ({"spine": {"user_id": [1], "timestamp": ["2024-01-02T00:00:00"]}, "features": ["user.country"]}, 400,
     "invalid_field"),
    ({"spine": {"user_id": ["one"], "timestamp": [at(2).isoformat()]}, "features": ["user.country"]}, 202, None),
    ({"spine": [1, 2], "features": ["user.country"]}, 400, "invalid_field"),
])
def test_bad_training_set_requests_are_refused_with_a_code(server, body, status, code):
    headers = {"Authorization": f"Bearer {server['tokens']['support']}"}
    answer = httpx.post(server["base"] + "/v1/training-sets", headers=headers, json=body)
    assert answer.status_code == status, answer.text
    if code is not None:
        assert answer.json()["error"]["code"] == code
    else:  # a spine the engine refuses: the job fails, saying why
        job = _wait_job(server, server["tokens"]["support"], answer.json())
        assert job["status"] == "failed" and "user_id" in str(job["error"])


def test_suggestions_name_only_what_the_principal_may_request(server):
    answer = _query(server, server["tokens"]["support"], {**QUERY, "features": ["user.emial"]})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["suggestions"] == [] and "email" not in error["message"].replace("emial", "")
    answer = _query(server, server["tokens"]["support"], {**QUERY, "features": ["user.countyr"]})
    assert answer.json()["error"]["suggestions"] == ["user.country"]


def test_slow_bodies_hold_connections_not_the_request_slots(server):
    import socket as sk

    port = int(server["base"].rsplit(":", 1)[1])
    token = server["tokens"]["support"]
    held = []
    try:
        for _ in range(2 * 70):  # more than the 64 slots of each worker, every one sending its body slowly
            conn = sk.create_connection(("127.0.0.1", port))
            conn.sendall(f"POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{".encode())
            held.append(conn)
        time.sleep(0.3)
        answers = [_query(server, token, {**QUERY, "features": ["user.country"]}).status_code for _ in range(10)]
        assert answers == [200] * 10
    finally:
        for conn in held:
            conn.close()


def test_a_job_is_decided_again_for_another_token_of_the_same_name(server):
    token = server["tokens"]["scoring"]
    headers = {"Authorization": f"Bearer {token}"}
    job = httpx.post(server["base"] + "/v1/training-sets", headers=headers,
                     json={"spine": SPINE, "features": ["user.limit"]}).json()
    job = _wait_job(server, token, job)
    assert job["status"] == "done"
    same_name = _parity(server["root"], "token", "create", "--principal", "scoring-svc", "--role", "support").stdout.strip()
    other = {"Authorization": f"Bearer {same_name}"}
    assert httpx.get(f"{server['base']}/v1/training-sets/{job['id']}/result", headers=other).status_code == 403
    assert httpx.get(f"{server['base']}/v1/training-sets/{job['id']}", headers=other).status_code == 403
    assert httpx.get(f"{server['base']}/v1/training-sets/{job['id']}/result", headers=headers).status_code == 200


@pytest.mark.parametrize("days", ["nan", "inf", "1e300", "0", "-1"])
def test_token_expiry_must_be_a_sensible_number_of_days(server, days):
    made = _parity(server["root"], "token", "create", "--principal", "x", "--role", "support", "--expires-days", days)
    assert made.returncode == 2 and "--expires-days" in made.stderr and made.stdout == ""


def test_keys_of_every_dtype_cross_the_wire(server):
    import datetime as dt

    import parity as pt

    entities = {"day": [dt.date(2024, 1, 1)] * 3, "at": [at(1, 3), at(1, 4), at(1, 5)],
                "level": [float("nan"), 0.5, float("inf")]}
    project = pt.Project.load(str(server["root"]))
    try:
        expected = project.query(entities, ["reading.value"], now=at(2), with_status=True)
    finally:
        project.close()
    assert expected.rows == [{"reading.value": 1.5}, {"reading.value": 2.5}, {"reading.value": None}]
    with pt.Client(server["base"], server["tokens"]["sensors"]) as client:
        got = client.query(entities, ["reading.value"], now=at(2), with_status=True)
    assert repr(got) == repr(expected)
    bad = _query(server, server["tokens"]["sensors"], {"entities": {"day": ["tomorrow"], "at": [at(1).isoformat()],
                                                                    "level": [1.0]}, "features": ["reading.value"]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_entity_key"


def test_request_time_postgres_features_are_granted_and_masked_like_any_other(server):
    body = {"entities": {"user_id": [1, 2]}, "features": ["user.status", "user.phone"], "now": at(2).isoformat(),
            "with_status": True}
    answer = _query(server, server["tokens"]["scoring"], body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [{"user.status": "active", "user.phone": None},
                                     {"user.status": "frozen", "user.phone": None}]
    assert "+49" not in answer.text and "+33" not in answer.text
    refused = _query(server, server["tokens"]["support"], body)
    assert refused.status_code == 403 and set(refused.json()["error"]["denied"]) == {"user.status", "user.phone"}
    assert "+49" not in refused.text and "active" not in refused.text


def test_served_values_are_in_the_feature_log_under_the_request_id_of_the_trail(server):
    import orjson

    from parity.connectors.feature_log_parquet import ParquetFeatureLog

    answer = _query(server, server["tokens"]["scoring"], QUERY)
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:  # each worker writes its buffer every second
        log = ParquetFeatureLog(str(server["root"])).read().to_pylist()
        mine = [r for r in log if r["request_id"] == request_id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == 2 and {r["principal"] for r in mine} == {"scoring-svc"}
    served = answer.json()
    for r in mine:  # the values and statuses as answered, masked included (logged without its value)
        assert orjson.loads(r["values"]) == served["rows"][r["row"]]
        assert orjson.loads(r["statuses"]) == {ref: d["status"] for ref, d in served["details"][r["row"]].items()}
        assert orjson.loads(r["statuses"])["user.email"] == "masked"
    time.sleep(0.3)
    audited = [r for r in _records(server["root"], "--action", "query") if r.get("request") == request_id]
    assert len(audited) == 1 and audited[0]["features"] == QUERY["features"]
