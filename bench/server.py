"""The server's costs: the access decision, the audit append and token lookup per request
(in-process), and HTTP throughput/latency over loopback against a bare Starlette app reading a
dict, side by side in one run.

    .venv/bin/python bench/server.py overheads
    .venv/bin/python bench/server.py http [--seconds 8] [--clients 1 16] [--load wrk|python]
    .venv/bin/python bench/server.py feast [--seconds 8] [--stores sqlite redis] [--rates 250 500 ...]
        # needs bench/.venv-feast and wrk; --rates: open-loop tails (bench/open_loop.py), same rates for both
    .venv/bin/python bench/server.py soak [--minutes 10]   # 16 clients, RSS of every worker sampled
    .venv/bin/python bench/server.py push [--seconds 5] [--events 1 100]   # POST /v1/push vs project.push
    .venv/bin/python bench/server.py logging [--seconds 8] [--repeat 2]   # the feature log off / 1 % / every query

The load client is wrk (Debian's package ``wrk``: C, closed-loop, keep-alive; one thread) when it
is installed, else a Python httpx client — whose own CPU then caps the figures for both servers
alike. Either shares the two cores with the servers, so the ratio is what counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

DEFS = '''
import parity as pt

user = pt.Entity("user", keys={"user_id": pt.Int64})
profile = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                         features=[pt.Feature(f"f{i}", pt.Float64) for i in range(9)]
                                  + [pt.Feature("email", pt.String, tags=["pii"])])
scoring = pt.Role("scoring", grants=[pt.Grant(entity="user")], pii="mask")
'''
FEATURES = [f"user.f{i}" for i in range(9)] + ["user.email"]


def _project(tmp: str, users: int = 10_000) -> None:
    import polars as pl

    with open(os.path.join(tmp, "parity.toml"), "w") as fh:
        fh.write('[project]\nname = "benchserver"\ndefinitions = "defs.py"\n')
    with open(os.path.join(tmp, "defs.py"), "w") as fh:
        fh.write(textwrap.dedent(DEFS))
    import datetime as dt

    ts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pl.DataFrame({"user_id": list(range(users)), "ts": [ts] * users, "email": [f"u{i}@x.org" for i in range(users)],
                  **{f"f{i}": [float(u * 10 + i) for u in range(users)] for i in range(9)}}).write_parquet(
        os.path.join(tmp, "u.parquet"))


def _per_call_ns(fn, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(5):
        started = time.perf_counter_ns()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter_ns() - started) / n)
    return {"median_ns": statistics.median(samples), "min_ns": min(samples)}


def overheads(args: argparse.Namespace) -> None:
    import parity as pt
    from parity.server.audit import AuditLog, AuditPaths, hashed_keys
    from parity.server.tokens import TokenStore

    out: dict[str, object] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        _project(tmp)
        project = pt.Project.load(tmp)
        project.materialize()
        who = pt.Principal("svc", ["scoring"])
        plan = project.plan(FEATURES)
        started = time.perf_counter()
        project.access_policy().check(who, plan)
        out["access: compile the policy and decide a plan first (µs)"] = (time.perf_counter() - started) * 1e6
        policy = project.access_policy()
        out["access: check, 10 features, cached (per request)"] = _per_call_ns(lambda: policy.check(who, plan), 100_000)
        entities = {"user_id": [7]}
        out["query in-process, 1 entity × 10 features, no principal"] = _per_call_ns(
            lambda: project.query(entities, FEATURES), 5_000)
        out["query in-process, same, with the principal (check + mask)"] = _per_call_ns(
            lambda: project.query(entities, FEATURES, principal=who), 5_000)

        log = AuditLog(AuditPaths.for_root(os.path.join(tmp, "audit-state")))
        details = {"features": FEATURES, "versions": {f: "0123456789abcdef" for f in FEATURES}, "policy": "p", "token": "t"}

        def append() -> None:
            log.append("svc", "query", "ok", status=200, entities=hashed_keys(log, entities), **details)

        samples = []
        for _ in range(200):  # groups of 1,000, as the flusher leaves them (100 ms at 10k requests/s)
            started = time.perf_counter_ns()
            for _ in range(1_000):
                append()
            samples.append((time.perf_counter_ns() - started) / 1_000)
            log._buffer.clear()
        out["audit: append incl. keyed hash of 1 entity (per request, ns)"] = {
            "median_ns": statistics.median(samples), "p99_ns": sorted(samples)[198]}
        log.flush()
        for _ in range(10_000):
            append()
        started = time.perf_counter()
        written = log.flush()
        out["audit: group commit of 10,000 records (write + fsync), per record (ns)"] = \
            (time.perf_counter() - started) * 1e9 / written
        for _ in range(100):  # a flush every 100 ms at ~1k requests/s: groups of ~100
            append()
        started = time.perf_counter()
        written = log.flush(sign=True)
        out["audit: group commit of 100 records + a signed checkpoint (ms)"] = (time.perf_counter() - started) * 1e3
        log.close()
        from parity.server.audit import verify

        started = time.perf_counter()
        verdict = verify(log.paths)
        elapsed = time.perf_counter() - started
        out["audit: verify, records per second"] = verdict.records / elapsed
        out["audit: verify ok"] = verdict.ok

        tokens = TokenStore(os.path.join(tmp, "tokens.db"))
        token, _ = tokens.create("svc", ["scoring"])
        out["tokens: authenticate (checksum, data_version, SHA-256, cached)"] = _per_call_ns(
            lambda: tokens.authenticate(token), 50_000)
        project.close()
    print(json.dumps(out, indent=1))


BARE = '''
import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

VALUES = {u: {f"user.f{i}": float(u * 10 + i) for i in range(9)} for u in range(10_000)}

async def query(request):
    body = orjson.loads(await request.body())
    rows = [VALUES[u] for u in body["entities"]["user_id"]]
    return Response(orjson.dumps({"rows": rows}), media_type="application/json")

app = Starlette(routes=[Route("/v1/query", query, methods=["POST"])])
'''


async def _load(url: str, token: str, clients: int, seconds: float) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            n = i
            while time.monotonic() < stop:
                body = {"entities": {"user_id": [n % 10_000]}, "features": FEATURES}
                started = time.perf_counter()
                answer = await http.post(url, json=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(answer.text)
                n += clients

    await asyncio.gather(*(client(i) for i in range(clients)))
    latencies.sort()
    return {"requests_per_s": len(latencies) / seconds, "p50_ms": latencies[len(latencies) // 2] * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3}


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError("the server exited") from None
            time.sleep(0.2)
    raise RuntimeError("the server did not start")


# The request body of the `http` and `soak` runs, as a Lua expression over `ids` (see WRK_LUA).
BENCH_BODY = ("""'{"entities":{"user_id":[' .. table.concat(ids, ',') .. ']},"features":["""
              + ",".join(f'"{f}"' for f in FEATURES) + "]}'")


def _wrk(url: str, token: str, clients: int, seconds: float, tmp: str) -> dict[str, float]:
    return _wrk_shape(url, clients, seconds, tmp, entities=1, body=BENCH_BODY, token=token)


def http(args: argparse.Namespace) -> None:
    import shutil

    load = args.load or ("wrk" if shutil.which("wrk") else "python")
    out: dict[str, object] = {"machine": machine(), "seconds": args.seconds, "load": load,
                              "request": "1 entity × 10 features (1 masked pii), JSON, SQLite online store"}
    with tempfile.TemporaryDirectory() as tmp:
        _project(tmp)
        run = [sys.executable, "-m", "parity", "-C", tmp]
        subprocess.run([*run, "materialize", "-q"], check=True)
        token = subprocess.run([*run, "token", "create", "--principal", "bench", "--role", "scoring"],
                               check=True, capture_output=True, text=True).stdout.strip()
        with open(os.path.join(tmp, "bare.py"), "w") as fh:
            fh.write(BARE)
        servers = {
            "parity serve (auth, access check, audit on)": [*run, "serve", "--port", "18431",
                                                            "--workers", str(args.workers)],
            "bare Starlette reading a dict": [sys.executable, "-m", "uvicorn", "--app-dir", tmp, "bare:app",
                                              "--port", "18432", "--workers", str(args.workers), "--log-level",
                                              "warning", "--no-access-log"],
        }
        for name, command in servers.items():
            port = command[command.index("--port") + 1]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                _wait(f"http://127.0.0.1:{port}/v1/health", proc)
                url = f"http://127.0.0.1:{port}/v1/query"
                asyncio.run(_load(url, token, 4, 1.0))  # warm-up
                for clients in args.clients:
                    if load == "wrk":
                        out[f"{name}, {clients} clients"] = _wrk(url, token, clients, args.seconds, tmp)
                    else:
                        out[f"{name}, {clients} clients"] = asyncio.run(_load(url, token, clients, args.seconds))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        audit = subprocess.run([*run, "audit", "verify"], capture_output=True, text=True)
        out["audit verify after the run"] = audit.stdout.strip()
    print(json.dumps(out, indent=1))


WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
AUTH
local n = 0
request = function()
  local ids = {}
  for i = 1, ENTITIES do
    n = n + 1
    ids[i] = tostring((n * 7919) % 10000)
  end
  return wrk.format(nil, nil, nil, BODY)
end
"""
# What every wrk script reports: one line the bench parses (``_run_wrk``).
WRK_DONE = """done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %f %f %f %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""
WRK_LUA += WRK_DONE


def _wrk_shape(url: str, clients: int, seconds: float, tmp: str, *, entities: int, body: str,
               token: str | None) -> dict[str, float]:
    script = os.path.join(tmp, f"shape-{entities}.lua")
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    with open(script, "w") as fh:
        fh.write(WRK_LUA.replace("AUTH", auth).replace("ENTITIES", str(entities)).replace("BODY", body))
    return _run_wrk(script, url, clients, seconds)


def _run_wrk(script: str, url: str, clients: int, seconds: float) -> dict[str, float]:
    """wrk (1 thread, closed loop) with a script ending in ``WRK_DONE``: requests/s, latencies, errors."""
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    requests, duration_us, p50, p99, p999, errors = line.split()[1:]
    return {"requests": int(requests), "requests_per_s": int(requests) / (int(duration_us) / 1e6),
            "p50_ms": float(p50) / 1e3, "p99_ms": float(p99) / 1e3, "p99.9_ms": float(p999) / 1e3,
            "errors": int(errors)}


def _constant_rate(server: str, port: int, path: str, token: str, names: list[str], rate: float,
                   seconds: float) -> dict[str, float]:
    from open_loop import constant_rate, request_bytes

    payloads = []
    for user in range(0, 10_000, 7):
        if server == "parity":
            body = {"entities": {"user_id": [user]}, "features": [f"user.{f}" for f in names]}
            headers = {"Authorization": f"Bearer {token}"}
        else:
            body = {"features": [f"user_stats:{f}" for f in names], "entities": {"user_id": [user]}}
            headers = {}
        payloads.append(request_bytes(path, json.dumps(body).encode(), headers))
    asyncio.run(constant_rate(port, payloads, min(rate, 200), 1.0))  # warm-up: connections, caches
    return asyncio.run(constant_rate(port, payloads, rate, seconds))


def feast(args: argparse.Namespace) -> None:
    """parity serve (token auth, access check, audit on) and Feast's feature server on the same data
    (bench/data/fraud-small: 1M rows, 10k users, 10 features), the same wrk load, one after the other."""
    import uuid

    from feast_run import FEATURES as FEAST_FEATURES

    here = os.path.dirname(os.path.abspath(__file__))
    venv = os.path.join(here, ".venv-feast", "bin", "python")
    if not os.path.exists(venv):
        raise SystemExit("Feast's virtualenv is missing: python3.11 -m venv bench/.venv-feast && "
                         "bench/.venv-feast/bin/pip install 'feast[duckdb,redis]==0.67.*'")
    data = os.path.join(here, "data", "fraud-small")
    if not os.path.exists(os.path.join(data, "feature_rows.parquet")):
        subprocess.run([sys.executable, os.path.join(here, "generate.py"), "small"], check=True)
    names = list(FEAST_FEATURES)
    parity_features = "'[" + ",".join(f'"user.{f}"' for f in names) + "]'"
    feast_features = "'[" + ",".join(f'"user_stats:{f}"' for f in names) + "]'"
    ids = "table.concat(ids, ',')"
    bodies = {"parity": f"""'{{"entities":{{"user_id":[' .. {ids} .. ']}},"features":' .. {parity_features} .. '}}'""",
              "feast": f"""'{{"features":' .. {feast_features} .. ',"entities":{{"user_id":[' .. {ids} .. ']}}}}'"""}
    out: dict[str, object] = {"machine": machine(), "seconds": args.seconds, "data": "fraud-small: 1M rows, 10k users",
                              "load": "wrk 1 thread, closed loop, keep-alive, on the same 2 cores"}
    for store in args.stores:
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "parity.toml"), "w") as fh:
                fh.write('[project]\nname = "benchfeast"\ndefinitions = "defs.py"\n')
                if store == "redis":
                    fh.write(f'[online_store]\ntype = "redis"\nurl = "redis://127.0.0.1:6379/0"\n'
                             f'namespace = "bench-{uuid.uuid4().hex[:8]}"\n')
            with open(os.path.join(tmp, "defs.py"), "w") as fh:
                fields = ", ".join(f'pt.Feature("{f}", pt.{d})' for f, d in FEAST_FEATURES.items())
                fh.write(textwrap.dedent(f"""
                    import parity as pt
                    user = pt.Entity("user", keys={{"user_id": pt.Int64}})
                    src = pt.ParquetSource("user_txn_stats", path={os.path.join(data, "feature_rows.parquet")!r},
                                           event_time="event_ts", created_time="created_ts", as_of="event_time")
                    user_stats = pt.FeatureView("user_stats", entity=user, source=src, features=[{fields}])
                    bench = pt.Role("bench", grants=[pt.Grant(entity="user")])
                """))
            run = [sys.executable, "-m", "parity", "-C", tmp]
            subprocess.run([*run, "materialize", "-q"], check=True)
            token = subprocess.run([*run, "token", "create", "--principal", "bench", "--role", "bench"],
                                   check=True, capture_output=True, text=True).stdout.strip()
            servers = {
                "parity": ([*run, "serve", "--port", "18451", "--workers", "2"], "18451", "/v1/health", "/v1/query"),
                "feast": ([venv, os.path.join(here, "feast_run.py"), "serve", data, "18452", store], "18452",
                          "/health", "/get-online-features"),
            }
            for name, (command, port, health, path) in servers.items():
                proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    _wait(f"http://127.0.0.1:{port}{health}", proc)
                    url = f"http://127.0.0.1:{port}{path}"
                    _wrk_shape(url, 4, 2, tmp, entities=1, body=bodies[name], token=token)  # warm-up
                    for entities in (1, 100):
                        for clients in args.clients:
                            out[f"{store} {name}: {entities} entities x 10 features, {clients} clients"] = _wrk_shape(
                                url, clients, args.seconds, tmp, entities=entities, body=bodies[name],
                                token=token if name == "parity" else None)
                    capacity = max(float(v["requests_per_s"]) for k, v in out.items()  # type: ignore[union-attr]
                                   if k.startswith(f"{store} {name}: 1 entities"))
                    for rate in args.rates:  # open loop: tails at a constant rate (bench/open_loop.py)
                        cell = f"{store} {name}: 1 entity x 10 features, constant {rate:g} requests/s"
                        if rate > 0.9 * capacity:  # past what it serves closed-loop, the queue only grows
                            out[cell] = f"over capacity (closed-loop best {capacity:,.0f} requests/s)"
                            continue
                        out[cell] = _constant_rate(name, int(port), path, token, names, rate, args.seconds)
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    print(json.dumps(out, indent=1))


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS")) / 1024


def _workers(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def soak(args: argparse.Namespace) -> None:
    """parity serve under wrk (16 clients, 1 entity × 10 features, auth + audit on) for --minutes,
    in 30 s rounds: throughput, p99 and every worker's resident memory after each round."""
    out: dict[str, object] = {"machine": machine(), "minutes": args.minutes, "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        _project(tmp)
        run = [sys.executable, "-m", "parity", "-C", tmp]
        subprocess.run([*run, "materialize", "-q"], check=True)
        token = subprocess.run([*run, "token", "create", "--principal", "bench", "--role", "scoring"],
                               check=True, capture_output=True, text=True).stdout.strip()
        proc = subprocess.Popen([*run, "serve", "--port", "18461", "--workers", "2"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait("http://127.0.0.1:18461/v1/health", proc)
            url = "http://127.0.0.1:18461/v1/query"
            _wrk(url, token, 16, 5, tmp)  # warm-up
            rounds: list[dict[str, object]] = out["rounds"]  # type: ignore[assignment]
            for i in range(int(args.minutes * 2)):
                result = _wrk(url, token, 16, 30, tmp)
                rss = [_rss_mb(p) for p in _workers(proc.pid)]
                rounds.append({"t_s": (i + 1) * 30, "requests_per_s": round(result["requests_per_s"]),
                               "p99_ms": result["p99_ms"], "errors": result["errors"],
                               "worker_rss_mb": [round(r, 1) for r in rss]})
                print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        verified = subprocess.run([*run, "audit", "verify"], capture_output=True, text=True)
        out["audit verify"] = verified.stdout.strip()
    print(json.dumps(out, indent=1))


PUSH_DEFS = '''
import datetime as dt
import parity as pt

card = pt.Entity("card", keys={"card_id": pt.Int64})
payments = pt.StreamSource(name="payments", event_time="ts", event_id="id",
                           schema={"id": pt.String, "card_id": pt.Int64, "amount": pt.Float64, "ts": pt.Timestamp})
velocity = pt.WindowView("velocity", entity=card, source=payments, columns={"amount": pt.Float64},
                         windows=["10m", "1h", "1d", "30d"],
                         features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("total", pt.agg.sum("amount"))])
ingest = pt.Role("ingest", push=["payments"])
'''

PUSH_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
local n = 0
local prefix = "RUN"
request = function()
  local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local events = {}
  for i = 1, EVENTS do
    n = n + 1
    events[i] = '{"id":"' .. prefix .. n .. '","card_id":' .. (n % 5000) .. ',"amount":' .. (n % 997) / 4 .. ',"ts":"' .. ts .. '"}'
  end
  return wrk.format(nil, nil, nil, '{"events":[' .. table.concat(events, ',') .. ']}')
end
""" + WRK_DONE


def push(args: argparse.Namespace) -> None:
    """Pushes over HTTP (2 workers: one holds the source's writer, the other forwards to it; auth,
    access check and audit on) against project.push in process on the same definitions, with the
    events per push as the parameter; every acknowledged event is then counted in the log."""
    import datetime as dt
    import uuid

    import parity as pt

    out: dict[str, object] = {"machine": machine(), "seconds": args.seconds,
                              "source": "4 widths × (count, sum) window view, SQLite online store"}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "parity.toml"), "w") as fh:
            fh.write('[project]\nname = "benchpush"\ndefinitions = "defs.py"\n')
        with open(os.path.join(tmp, "defs.py"), "w") as fh:
            fh.write(textwrap.dedent(PUSH_DEFS))
        run = [sys.executable, "-m", "parity", "-C", tmp]
        token = subprocess.run([*run, "token", "create", "--principal", "bench", "--role", "ingest"],
                               check=True, capture_output=True, text=True).stdout.strip()
        project = pt.Project.load(tmp)
        for events in args.events:  # in process: one commit per call, sequential
            now = dt.datetime.now(dt.UTC).isoformat()
            calls, started = 0, time.perf_counter()
            latencies = []
            while time.perf_counter() - started < args.seconds:
                batch = [{"id": f"local-{events}-{calls}-{i}", "card_id": (calls * events + i) % 5000,
                          "amount": i / 4, "ts": now} for i in range(events)]
                t = time.perf_counter()
                project.push("payments", batch)
                latencies.append(time.perf_counter() - t)
                calls += 1
            elapsed = time.perf_counter() - started
            latencies.sort()
            out[f"project.push, {events} events per call, 1 caller"] = {
                "events_per_s": calls * events / elapsed, "calls_per_s": calls / elapsed,
                "p50_ms": latencies[len(latencies) // 2] * 1e3, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3}
        project.close()  # frees the writer for the server
        proc = subprocess.Popen([*run, "serve", "--port", "18433", "--workers", "2"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        acknowledged = 0
        try:
            _wait("http://127.0.0.1:18433/v1/health", proc)
            for events in args.events:
                for clients in args.clients:
                    script = os.path.join(tmp, f"push-{events}-{clients}.lua")
                    with open(script, "w") as fh:
                        fh.write(PUSH_LUA.replace("TOKEN", token).replace("EVENTS", str(events))
                                 .replace("RUN", f"http-{events}-{clients}-{uuid.uuid4().hex[:6]}-"))
                    got = _run_wrk(script, "http://127.0.0.1:18433/v1/push/payments", clients, args.seconds)
                    acknowledged += int(got["requests"] - got["errors"]) * events
                    out[f"POST /v1/push, {events} events per push, {clients} clients"] = {
                        "events_per_s": got["requests_per_s"] * events, "pushes_per_s": got["requests_per_s"],
                        "p50_ms": got["p50_ms"], "p99_ms": got["p99_ms"], "errors": got["errors"]}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        project = pt.Project.load(tmp)
        logged = project.ingestor("payments").log.read(columns=["id"])["id"]
        out["events in the log from HTTP / acknowledged (wrk counts requests cut at the end as sent)"] = \
            f"{int(logged.str.starts_with('http-').sum()):,} / {acknowledged:,}"
        out["log segments after the run"] = len(project.ingestor("payments").log.segments())  # type: ignore[attr-defined]
        project.close()
    print(json.dumps(out, indent=1))


def logging_overhead(args: argparse.Namespace) -> None:
    """The served-value log's cost on the online path: parity serve with the log off, at the
    default 1 % and at every query, alternated (``--repeat`` rounds) on the same wrk load."""
    out: dict[str, object] = {"machine": machine(), "seconds": args.seconds,
                              "request": "1 entity × 10 features (1 masked pii), SQLite, 16 clients, 2 workers"}
    with tempfile.TemporaryDirectory() as tmp:
        _project(tmp)
        run = [sys.executable, "-m", "parity", "-C", tmp]
        subprocess.run([*run, "materialize", "-q"], check=True)
        token = subprocess.run([*run, "token", "create", "--principal", "bench", "--role", "scoring"],
                               check=True, capture_output=True, text=True).stdout.strip()
        config = os.path.join(tmp, "parity.toml")
        with open(config) as fh:
            base = fh.read()
        cells: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.repeat):
            for rate in (0.0, 0.01, 1.0):
                with open(config, "w") as fh:
                    fh.write(base + f"[feature_log]\nsample_rate = {rate}\n")
                proc = subprocess.Popen([*run, "serve", "--port", "18434", "--workers", "2"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    _wait("http://127.0.0.1:18434/v1/health", proc)
                    url = "http://127.0.0.1:18434/v1/query"
                    _wrk(url, token, 4, 1.0, tmp)  # warm-up
                    cells.setdefault(f"sample_rate {rate}", []).append(_wrk(url, token, 16, args.seconds, tmp))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
        for name, runs in cells.items():
            out[name] = {"requests_per_s": [round(r["requests_per_s"]) for r in runs],
                         "p99_ms": [r["p99_ms"] for r in runs], "errors": sum(r["errors"] for r in runs)}
        from parity.connectors.feature_log_parquet import ParquetFeatureLog

        out["rows in the feature log"] = ParquetFeatureLog(tmp).read().num_rows
    print(json.dumps(out, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("overheads")
    p.set_defaults(run=overheads)
    p = sub.add_parser("http")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--load", choices=["wrk", "python"])
    p.set_defaults(run=http)
    p = sub.add_parser("feast")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    p.add_argument("--stores", nargs="+", default=["sqlite", "redis"])
    p.add_argument("--rates", type=float, nargs="*", default=[250, 500, 1000, 2000, 4000],
                   help="constant request rates (open loop) for the tail latency of 1 entity")
    p.set_defaults(run=feast)
    p = sub.add_parser("push")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--events", type=int, nargs="+", default=[1, 100])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    p.set_defaults(run=push)
    p = sub.add_parser("logging")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--repeat", type=int, default=2)
    p.set_defaults(run=logging_overhead)
    p = sub.add_parser("soak")
    p.add_argument("--minutes", type=float, default=10.0)
    p.set_defaults(run=soak)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
