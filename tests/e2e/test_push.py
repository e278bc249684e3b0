"""``POST /v1/push/{source}`` over loopback, two workers, over both online stores: who may push
(deny by default, no oracle for unknown sources), all-or-none commits, idempotence by event id,
exact counts under concurrent pushes through both workers, and a ``kill -9`` of the worker that
holds the source's writer — the other takes over and nothing is lost or counted twice."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.serving import start_server
from tests.support_services import REDIS_URL, require_service

DEFS = '''
import datetime as dt
import parity as pt

user = pt.Entity("user", keys={"user_id": pt.Int64})
payments = pt.StreamSource(name="payments", schema={"id": pt.String, "user_id": pt.Int64, "amount": pt.Float64,
                                                   "ts": pt.Timestamp},
                           event_time="ts", event_id="id", max_lateness=dt.timedelta(days=1))
spend = pt.WindowView("spend", entity=user, source=payments, columns={"amount": pt.Float64}, windows=["30d"],
                      features=[pt.Aggregate("pay_count", pt.agg.count()), pt.Aggregate("pay_sum", pt.agg.sum("amount"))])
last = pt.FeatureView("last_payment", entity=user, source=payments, features=[pt.Feature("amount", pt.Float64)])

ingest = pt.Role("ingest", push=["payments"])
scoring = pt.Role("scoring", grants=[pt.Grant(entity="user")])
'''
FEATURES = ["user.pay_count[30d]", "user.pay_sum[30d]", "user.amount"]


def _parity(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parity", "-C", str(root), *args], capture_output=True, text=True)



@pytest.fixture(scope="module", params=["sqlite", "redis"])
def server(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("pushed")
    config = '[project]\nname = "pushed"\ndefinitions = "defs.py"\n'
    if request.param == "redis":
        require_service("redis", "127.0.0.1", 6379)
        config += f'[online_store]\ntype = "redis"\nurl = "{REDIS_URL}"\nnamespace = "pushed-{uuid.uuid4().hex[:8]}"\n'
    (root / "parity.toml").write_text(config)
    (root / "defs.py").write_text(textwrap.dedent(DEFS))
    tokens = {role: _parity(root, "token", "create", "--principal", f"{role}-svc", "--role", role).stdout.strip()
              for role in ("ingest", "scoring")}
    proc, base = start_server(root)
    yield {"root": root, "base": base, "tokens": tokens, "proc": proc}
    proc.terminate()
    proc.wait(timeout=20)


def _push(server, role: str | None, events: object, source: str = "payments",  # type: ignore[no-untyped-def]
          **kwargs: object) -> httpx.Response:
    headers = {} if role is None else {"Authorization": f"Bearer {server['tokens'].get(role, role)}"}
    body = events if isinstance(events, dict) else {"events": events}
    return httpx.post(f"{server['base']}/v1/push/{source}", json=body, headers=headers, timeout=30, **kwargs)


# Events two days ago and later: served now (a push is known from its commit on, so a past ``now``
# would not see it), inside the 30-day window.
BASE = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)


def _event(user: int, amount: float, minute: int, event_id: str | None = None) -> dict[str, object]:
    return {"id": event_id or uuid.uuid4().hex, "user_id": user, "amount": amount,
            "ts": (BASE + dt.timedelta(minutes=minute)).isoformat()}


def _values(server, user: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    answer = httpx.post(server["base"] + "/v1/query", headers={"Authorization": f"Bearer {server['tokens']['scoring']}"},
                        json={"entities": {"user_id": [user]}, "features": FEATURES})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["rows"][0])


def _log_ids(root: Path) -> list[str]:
    import polars as pl

    from parity.connectors.event_log import live_segments

    # the log as its readers see it: a merge killed before removing its parts leaves them behind
    paths = [p for _, _, p in live_segments(str(root / ".parity" / "events" / "payments"))]
    frame = pl.read_parquet(paths).sort("_parity_log_seq") if paths else None
    if frame is None:
        return []
    seqs = frame["_parity_log_seq"].to_list()
    assert seqs == list(range(1, len(seqs) + 1))  # contiguous: one writer, whichever worker answered
    return list(frame["id"])


def test_pushing_is_denied_by_default_and_unknown_sources_look_the_same(server):
    events = [_event(1, 1.0, 0)]
    refused = _push(server, "scoring", events)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert refused.json()["error"]["field"] == "source"
    unknown = _push(server, "scoring", events, source="nope")
    granted_elsewhere = _push(server, "ingest", events, source="nope")
    assert unknown.status_code == granted_elsewhere.status_code == 403
    assert granted_elsewhere.json()["error"]["message"].replace("nope", "payments") == \
        refused.json()["error"]["message"].replace("scoring-svc", "ingest-svc")
    assert _push(server, None, events).status_code == 401
    assert events[0]["id"] not in _log_ids(server["root"])


def test_a_push_is_committed_served_and_idempotent_by_event_id(server):
    user = 100
    events = [_event(user, 2.5, 1), _event(user, 4.0, 2), _event(user, 0.5, 3)]
    first = _push(server, "ingest", events)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["accepted"] == 3 and body["duplicates"] == 0 and body["last_seq"] - body["first_seq"] == 2
    assert _values(server, user) == {"user.pay_count[30d]": 3, "user.pay_sum[30d]": 7.0, "user.amount": 0.5}
    again = _push(server, "ingest", events).json()  # a retry after a lost answer
    assert again["accepted"] == 0 and again["duplicates"] == 3 and again["first_seq"] is None
    assert _values(server, user)["user.pay_count[30d]"] == 3
    ids = _log_ids(server["root"])
    assert all(ids.count(e["id"]) == 1 for e in events)


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"events": []}, 400, "invalid_field"),
    ({"events": {"id": "x"}}, 400, "invalid_field"),
    ({"event": []}, 400, "invalid_field"),
    ({"events": [{}] * 10_001}, 413, "too_many_events"),
    ({"events": [_event(1, 1.0, 0), {**_event(1, 1.0, 0), "amount": "lots"}]}, 422, "invalid_events"),
    ({"events": [_event(1, 1.0, 0), {**_event(1, 1.0, 0), "ts": "2024-01-01T00:00:00"}]}, 422, "invalid_events"),
    ({"events": [_event(1, 1.0, 0), {"user_id": 1}]}, 422, "invalid_events"),
    ({"events": [_event(1, 1.0, 0), 7]}, 422, "invalid_events"),
])
def test_a_bad_push_is_refused_whole_naming_the_event(server, body, status, code):
    before = _log_ids(server["root"])
    answer = _push(server, "ingest", body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["field"] == ("events" if "events" in body else "event")
    assert "\n" not in error["message"]
    if status == 422:
        assert [e["index"] for e in error["errors"]] == [1] and error["message"].startswith("event #1: ")
    assert _log_ids(server["root"]) == before  # nothing of it was written, not even the good event
    dead = server["root"] / ".parity" / "dead" / "payments.jsonl"
    assert not dead.exists() or str(body["events"][0].get("id")) not in dead.read_text()  # nor dead-lettered


def test_an_event_later_than_max_lateness_refuses_its_push(server):
    assert _push(server, "ingest", [_event(200, 1.0, 1000)]).status_code == 200  # the newest time seen, or near it
    late = _push(server, "ingest", [_event(200, 1.0, 999), _event(200, 1.0, -3 * 24 * 60)])  # 1 day is allowed
    assert late.status_code == 422 and "max_lateness" in late.json()["error"]["errors"][0]["reason"]
    assert late.json()["error"]["errors"][0]["index"] == 1


def test_a_time_the_store_cannot_index_is_refused_and_breaks_nothing(server):
    far = {**_event(800, 1.0, 0), "ts": "2300-01-01T00:00:00Z"}
    answer = _push(server, "ingest", [far])
    if "redis" in (server["root"] / "parity.toml").read_text():  # doubles: exact within ±2^53 µs
        assert answer.status_code == 422, answer.text
        assert "Redis online store" in answer.json()["error"]["errors"][0]["reason"]
    else:
        assert answer.status_code == 200, answer.text
    after = _push(server, "ingest", [_event(801, 2.0, 5)])  # the source is not poisoned
    assert after.status_code == 200 and after.json()["accepted"] == 1
    assert _values(server, 801)["user.pay_count[30d]"] == 1


def test_concurrent_pushes_through_both_workers_count_exactly(server):
    rng = random.Random(7)
    users = [300 + i for i in range(5)]
    sent: dict[str, dict[str, object]] = {}
    pushes = []
    for _ in range(120):
        batch = [_event(rng.choice(users), rng.randrange(1, 10_000) / 8, rng.randrange(0, 1000))
                 for _ in range(rng.randrange(1, 30))]
        if sent and rng.random() < 0.3:  # a retry of events already sent, mixed into a new push
            batch += rng.sample(list(sent.values()), k=min(3, len(sent)))
        for event in batch:
            sent[str(event["id"])] = event
        pushes.append(batch)
    failures: list[str] = []

    def run(part: list[list[dict[str, object]]]) -> None:
        with httpx.Client() as client:  # a connection per thread: both workers take pushes
            for batch in part:
                answer = client.post(f"{server['base']}/v1/push/payments", json={"events": batch}, timeout=30,
                                     headers={"Authorization": f"Bearer {server['tokens']['ingest']}"})
                if answer.status_code != 200:
                    failures.append(answer.text)

    threads = [threading.Thread(target=run, args=(pushes[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    ids = _log_ids(server["root"])
    assert sorted(i for i in ids if i in sent) == sorted(sent)  # every event once
    for user in users:
        mine = [e for e in sent.values() if e["user_id"] == user]
        got = _values(server, user)
        assert got["user.pay_count[30d]"] == len(mine)
        assert got["user.pay_sum[30d]"] == pytest.approx(sum(float(e["amount"]) for e in mine), abs=0)  # type: ignore[arg-type]


def test_pushes_are_in_the_audit_trail_with_their_log_sequences(server):
    events = [_event(400, 1.0, 1), _event(400, 2.0, 2)]
    body = _push(server, "ingest", events).json()
    _push(server, "scoring", events)
    time.sleep(0.5)  # past the group commit of the trail
    found = _parity(server["root"], "audit", "search", "--action", "push")
    records = [json.loads(line) for line in found.stdout.splitlines()]
    ok = [r for r in records if r.get("log_seq") == [body["first_seq"], body["last_seq"]]]
    assert ok and ok[0]["principal"] == "ingest-svc" and ok[0]["accepted"] == 2 and ok[0]["source"] == "payments"
    assert any(r["principal"] == "scoring-svc" and r["outcome"] == "forbidden" for r in records)
    assert events[0]["id"] not in found.stdout  # the trail points into the log; it does not copy events
    assert _parity(server["root"], "audit", "verify").returncode == 0


def _writer_pid(root: Path) -> int:
    return int((root / ".parity" / "events" / "payments" / ".writer.lock").read_text())


def test_kill_9_of_the_writing_worker_loses_nothing_and_counts_nothing_twice(server):
    import parity as pt

    rng = random.Random(11)
    user = 500
    acknowledged: dict[str, float] = {}
    stop = threading.Event()
    errors: list[str] = []

    def pusher() -> None:
        with pt.Client(server["base"], server["tokens"]["ingest"], timeout=10, retries=6, backoff=0.1) as client:
            while not stop.is_set():
                batch = [_event(user, rng.randrange(1, 1000) / 4, rng.randrange(0, 1000)) for _ in range(5)]
                while True:  # until this push is acknowledged: retrying the same events is safe
                    try:
                        client.push("payments", batch)
                        break
                    except Exception as exc:  # noqa: BLE001 - the writer is being killed under it
                        errors.append(f"{type(exc).__name__}: {exc}")
                        time.sleep(0.1)
                for event in batch:
                    acknowledged[str(event["id"])] = float(event["amount"])  # type: ignore[arg-type]

    threads = [threading.Thread(target=pusher) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        killed = set()
        for _ in range(3):
            time.sleep(0.6)
            pid = _writer_pid(server["root"])
            if pid in killed:
                continue
            os.kill(pid, signal.SIGKILL)  # the worker holding the source's writer, mid-stream
            killed.add(pid)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert len(killed) >= 2, killed
    ids = _log_ids(server["root"])
    mine = [i for i in ids if i in acknowledged]
    assert sorted(mine) == sorted(acknowledged) and len(mine) == len(set(mine))  # 0 lost, 0 twice
    got = _values(server, user)
    assert got["user.pay_count[30d]"] == len(acknowledged)
    assert got["user.pay_sum[30d]"] == sum(acknowledged.values())  # quarters: exact in binary floating point
    assert server["proc"].poll() is None  # the supervisor replaced the killed workers


def test_pushes_reach_a_parity_stream_consumer_that_holds_the_writer(tmp_path):
    """While ``parity stream`` consumes a NATS source it is the source's writer: the server forwards
    pushes to it, and transport batches and pushes are commits of one log."""
    from tests.support_services import NATS_URL

    require_service("nats", "127.0.0.1", 4222)
    import asyncio

    import nats

    run = uuid.uuid4().hex[:10]
    subject, stream = f"parity.push.{run}", f"PARITY_PUSH_{run.upper()}"
    root = tmp_path
    (root / "parity.toml").write_text(f'[project]\nname = "fwd{run}"\ndefinitions = "defs.py"\n')
    (root / "defs.py").write_text(textwrap.dedent(DEFS).replace(
        'max_lateness=dt.timedelta(days=1))', f'max_lateness=dt.timedelta(days=1), nats=pt.NatsSubject("{subject}", '
        f'stream="{stream}"))'))
    token = _parity(root, "token", "create", "--principal", "i", "--role", "ingest").stdout.strip()

    async def publish(events: list[dict[str, object]], create: bool) -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        if create:
            await js.add_stream(name=stream, subjects=[subject])
        for event in events:
            await js.publish(subject, json.dumps(event).encode())
        await nc.close()

    published = [_event(600, 1.0, i) for i in range(200)]
    asyncio.run(publish(published[:100], True))
    serving, base = start_server(root)  # the server first: it must not take the writer the consumer needs
    consumer = None
    pushed = [_event(600, 2.0, 300 + i) for i in range(60)]
    deadline = time.monotonic() + 30
    try:
        early = httpx.post(f"{base}/v1/push/payments", json={"events": pushed[:1]},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert early.status_code == 503 and early.json()["error"]["code"] == "push_unavailable"
        assert "parity stream" in early.json()["error"]["message"]
        consumer = subprocess.Popen([sys.executable, "-m", "parity", "-C", str(root), "stream", "-q"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while not (root / ".parity" / "events" / "payments" / ".writer.lock").exists() or \
                not (root / ".parity" / "events" / "payments" / ".writer.lock").read_text():
            assert time.monotonic() < deadline + 30 and consumer.poll() is None, consumer.stderr
            time.sleep(0.1)
        with httpx.Client() as client:
            for i in range(0, 60, 6):
                answer = client.post(f"{base}/v1/push/payments", json={"events": pushed[i:i + 6]},
                                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
                assert answer.status_code == 200 and answer.json()["accepted"] == 6, answer.text
                if i == 24:
                    asyncio.run(publish(published[100:], False))
        assert _writer_pid(root) == consumer.pid
    finally:
        serving.terminate()
        serving.wait(timeout=20)
        if consumer is not None:
            consumer.send_signal(signal.SIGINT)
            try:
                consumer.wait(timeout=20)
            except subprocess.TimeoutExpired:
                consumer.kill()

        async def cleanup() -> None:
            nc = await nats.connect(NATS_URL)
            await nc.jetstream().delete_stream(stream)
            await nc.close()

    drain = _parity(root, "stream", "--idle-exit", "2", "-q")
    asyncio.run(cleanup())
    assert drain.returncode == 0, drain.stderr
    ids = _log_ids(root)
    assert sorted(ids) == sorted(str(e["id"]) for e in published + pushed)  # each once, one contiguous log
