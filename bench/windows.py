"""Window aggregations, side by side in one run (figures go to bench/RESULTS.md).

    .venv/bin/python bench/windows.py offline [--events 10000000 --spine 1000000]
    .venv/bin/python bench/windows.py online [--events 200000]
    .venv/bin/python bench/windows.py ingest [--events 200000]
    .venv/bin/python bench/windows.py paced [--rate 10000 20000 30000]

offline: a training set of 4 widths (10m, 1h, 1d, 30d) × (count, sum, mean, distinct) over
  transaction events with created times (as known at t), by parity and by a hand-written DuckDB
  query with the same semantics (visible events, t − w < event time ≤ t), each in its own process;
  results compared row by row (counts and distinct exactly; sums and means: parity is exact, so a
  DuckDB difference is DuckDB's float rounding — reported as bit-identical / within 1e-9 / beyond).
online: in-process latency of 1 entity × 4 widths × 3 aggregates (count, sum, mean) from the SQLite
  and Redis window indexes, for one hot card whose 30 days hold every event — and the same read with
  the 30-day width alone vs the 10-minute width alone, to show the cost does not grow with width.
ingest: end-to-end events/s from NATS JetStream (one event per message, and 100 events per message)
  and MQTT into the event log and window index with durable commits, and event-to-servable p50/p99
  measured at a paced 50k events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import machine, run_child  # noqa: E402

DATA = os.path.join(HERE, "data", "windows")
WIDTHS = {"10m": 600, "1h": 3600, "1d": 86400, "30d": 30 * 86400}
AGGS = ["count", "sum", "mean", "distinct"]
SECOND = 1_000_000
T_END = 1_767_225_600 * SECOND  # 2026-01-01


def generate(events: int, spine: int, cards: int) -> str:
    import polars as pl

    path = os.path.join(DATA, f"e{events}_s{spine}_c{cards}")
    if os.path.exists(os.path.join(path, "spine.parquet")):
        return path
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(42)
    span = 60 * 86400 * SECOND
    ts = T_END - rng.integers(0, span, events)
    lag = (rng.exponential(2.0, events) * SECOND).astype(np.int64)
    pl.DataFrame({
        "card_id": rng.integers(0, cards, events),
        "ts": ts, "created": ts + lag,
        "amount": np.round(rng.lognormal(3, 1, events), 2),
        "merchant": rng.integers(0, 5000, events),
    }).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")), pl.col("created").cast(pl.Datetime("us", "UTC"))
                    ).write_parquet(os.path.join(path, "events.parquet"))
    t = T_END - rng.integers(0, 30 * 86400 * SECOND, spine)
    pl.DataFrame({"rid": np.arange(spine), "card_id": rng.integers(0, cards, spine), "timestamp": t}).with_columns(
        pl.col("timestamp").cast(pl.Datetime("us", "UTC"))).write_parquet(os.path.join(path, "spine.parquet"))
    return path


def _refs() -> list[str]:
    return [f"card.{a}[{w}]" for a in AGGS for w in WIDTHS]


def run_parity(path: str) -> None:
    import polars as pl

    import parity as pt

    card = pt.Entity("card", keys={"card_id": pt.Int64})
    source = pt.ParquetSource(name="txns", path=os.path.join(path, "events.parquet"), event_time="ts",
                              created_time="created")
    view = pt.WindowView("velocity", entity=card, source=source, windows=list(WIDTHS),
                         columns={"amount": pt.Float64, "merchant": pt.Int64},
                         features=[pt.Aggregate("count", pt.agg.count()), pt.Aggregate("sum", pt.agg.sum("amount")),
                                   pt.Aggregate("mean", pt.agg.mean("amount")),
                                   pt.Aggregate("distinct", pt.agg.count_distinct("merchant"))])
    spine = pl.read_parquet(os.path.join(path, "spine.parquet"))
    with tempfile.TemporaryDirectory() as tmp:
        project = pt.Project.from_definitions([card, view], root=tmp)
        started = time.perf_counter()
        table = project.training_set(spine, _refs())
        elapsed = time.perf_counter() - started
    pl.from_arrow(table).write_parquet(os.path.join(path, "parity.parquet"))
    print(json.dumps({"engine_s": elapsed}))


def run_duckdb(path: str) -> None:
    import duckdb

    spill = os.path.join(DATA, "duckdb-tmp")  # DuckDB spills here (gigabytes at 10M events), not into the clone
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                 "temp_directory": spill})
    ev, sp = os.path.join(path, "events.parquet"), os.path.join(path, "spine.parquet")
    cols = []
    for w, seconds in WIDTHS.items():
        inside = f"e.ts > s.timestamp - INTERVAL {seconds} SECOND"
        cols += [f'count(e.ts) FILTER (WHERE {inside}) AS "card.count[{w}]"',
                 f'coalesce(sum(e.amount) FILTER (WHERE {inside}), 0) AS "card.sum[{w}]"',
                 f'avg(e.amount) FILTER (WHERE {inside}) AS "card.mean[{w}]"',
                 f'count(DISTINCT e.merchant) FILTER (WHERE {inside}) AS "card.distinct[{w}]"']
    query = f"""
        SELECT s.rid, {', '.join(cols)}
        FROM read_parquet('{sp}') s
        LEFT JOIN read_parquet('{ev}') e
          ON e.card_id = s.card_id AND e.ts <= s.timestamp AND e.created <= s.timestamp
         AND e.ts > s.timestamp - INTERVAL {max(WIDTHS.values())} SECOND
        GROUP BY s.rid ORDER BY s.rid"""
    started = time.perf_counter()
    table = con.sql(query).to_arrow_table()
    elapsed = time.perf_counter() - started
    import pyarrow.parquet as pq

    pq.write_table(table, os.path.join(path, "duckdb.parquet"))
    print(json.dumps({"engine_s": elapsed}))


def compare(path: str) -> dict[str, object]:
    import polars as pl

    mine = pl.read_parquet(os.path.join(path, "parity.parquet")).sort("rid")
    theirs = pl.read_parquet(os.path.join(path, "duckdb.parquet")).sort("rid")
    out: dict[str, object] = {"rows": mine.height}
    exact, identical, close, beyond = 0, 0, 0, 0
    for ref in _refs():
        a, b = mine[ref], theirs[ref].cast(mine[ref].dtype)
        if "count" in ref or "distinct" in ref:
            exact += int((a.ne_missing(b)).sum())
            continue
        same = a.eq_missing(b)
        identical += int(same.sum())
        diff = ((a - b).abs() / b.abs().clip(1e-300)).fill_null(0)
        close += int((~same & (diff <= 1e-9)).sum())
        beyond += int((~same & (diff > 1e-9)).sum())
    out.update(count_distinct_mismatches=exact, float_bit_identical=identical, float_within_1e9=close,
               float_beyond_1e9=beyond)
    return out


def offline(args: argparse.Namespace) -> None:
    path = generate(args.events, args.spine, args.cards)
    rows = {}
    for engine in ("parity", "duckdb"):
        runs = [run_child([__file__, f"_{engine}", path], label=engine) for _ in range(args.repeat)]
        rows[engine] = {"engine_s": statistics.median(r["engine_s"] for r in runs),  # type: ignore[misc]
                        "process_s": statistics.median(r["process_wall_s"] for r in runs),  # type: ignore[misc]
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}  # type: ignore[type-var]
    result = {"machine": machine(), "events": args.events, "spine": args.spine, "cards": args.cards,
              "engines": rows, "ratio_duckdb_over_parity": rows["duckdb"]["engine_s"] / rows["parity"]["engine_s"],
              "compare": compare(path)}
    print(json.dumps(result, indent=1))


# -- online ---------------------------------------------------------------------------------------


def online(args: argparse.Namespace) -> None:
    import polars as pl

    import parity as pt

    rng = np.random.default_rng(1)
    out: dict[str, object] = {"machine": machine(), "events_hot_card": args.events}
    with tempfile.TemporaryDirectory() as tmp:
        now = T_END
        n = args.events
        ts = now - rng.integers(0, 30 * 86400 * SECOND - SECOND, n)  # all inside the 30-day window
        events = pl.DataFrame({"card_id": np.zeros(n, np.int64), "ts": ts, "amount": np.round(rng.lognormal(3, 1, n), 2)}
                              ).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
        events.write_parquet(os.path.join(tmp, "events.parquet"))
        card = pt.Entity("card", keys={"card_id": pt.Int64})
        source = pt.ParquetSource(name="txns", path=os.path.join(tmp, "events.parquet"), event_time="ts")
        view = pt.WindowView("velocity", entity=card, source=source, windows=list(WIDTHS), columns={"amount": pt.Float64},
                             features=[pt.Aggregate("count", pt.agg.count()), pt.Aggregate("sum", pt.agg.sum("amount")),
                                       pt.Aggregate("mean", pt.agg.mean("amount")),
                                       pt.Aggregate("min", pt.agg.min("amount")), pt.Aggregate("max", pt.agg.max("amount")),
                                       pt.Aggregate("last", pt.agg.last("amount")),
                                       pt.Aggregate("distinct", pt.agg.count_distinct("amount")),
                                       pt.Aggregate("p50", pt.agg.approx_percentile("amount", 0.5))])
        cases = {"4 widths x 3 aggregates": [f"card.{a}[{w}]" for a in ("count", "sum", "mean") for w in WIDTHS],
                 "10m only x 3": [f"card.{a}[10m]" for a in ("count", "sum", "mean")],
                 "30d only x 3": [f"card.{a}[30d]" for a in ("count", "sum", "mean")],
                 # window sets: one descent per aggregate, whatever the width
                 "10m x (min, max, last)": [f"card.{a}[10m]" for a in ("min", "max", "last")],
                 "30d x (min, max, last)": [f"card.{a}[30d]" for a in ("min", "max", "last")],
                 "10m x count_distinct": ["card.distinct[10m]"],
                 "30d x count_distinct": ["card.distinct[30d]"],
                 # approx_percentile: two checkpoints and two deltas (semantics.window_histograms)
                 "10m x approx_percentile": ["card.p50[10m]"],
                 "30d x approx_percentile": ["card.p50[30d]"]}
        stores = [("sqlite", {})]
        if args.redis:
            stores.append(("redis", {"online_store_type": "redis", "online_store_url": "redis://127.0.0.1:6379/0",
                                     "online_store_namespace": f"bench-windows-{os.getpid()}"}))
        now_dt = dt.datetime.fromtimestamp(now / SECOND, dt.UTC)
        for store, extra in stores:
            project = pt.Project.from_definitions([card, view], root=tmp, online_store_path=f".parity/{store}.db",
                                                  **extra)  # type: ignore[arg-type]
            started = time.perf_counter()
            project.materialize(until=now_dt)
            out[f"{store}_materialize_s"] = time.perf_counter() - started
            every = sorted({r for refs in cases.values() for r in refs})
            training = pl.from_arrow(project.training_set(pl.DataFrame({"card_id": [0], "timestamp": [now_dt]}), every))
            for label, refs in cases.items():
                for _ in range(200):
                    project.query({"card_id": 0}, refs, now=now_dt)
                samples = []
                for _ in range(args.queries):
                    t0 = time.perf_counter_ns()
                    result = project.query({"card_id": 0}, refs, now=now_dt)
                    samples.append((time.perf_counter_ns() - t0) / 1000)
                samples.sort()
                out[f"{store} {label}"] = {"p50_us": samples[len(samples) // 2],
                                           "p99_us": samples[int(len(samples) * 0.99)]}
                assert isinstance(training, pl.DataFrame)
                row = result.rows[0]
                mismatches = sum(1 for r in refs if repr(row[r]) != repr(training[r][0]))
                out[f"{store} mismatches vs training set"] = out.get(f"{store} mismatches vs training set", 0) + mismatches
            if store == "sqlite":
                out["sqlite index bytes per event"] = _index_bytes(project, n)
            if store == "redis":
                project.online_store().drop()  # type: ignore[attr-defined]
            project.close()
    print(json.dumps(out, indent=1))


def _index_bytes(project: object, events: int) -> dict[str, float]:
    """Payload bytes per event of the SQLite window index (before B-tree overhead): event rows
    (prefix states with the histogram lane's delta), and each set slot's members."""
    con = project.online_store()._con()  # type: ignore[attr-defined]
    name = next(n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE name LIKE 'wfv_velocity%' "
                                          "AND name NOT LIKE '%_keys' AND name NOT LIKE '%_sets'"))
    rows = con.execute(f"SELECT sum(length(k) + 8 * 6 + length(payload) + length(prefix)), "
                       f"sum(length(prefix)) FROM {name}").fetchone()
    out = {"event rows": rows[0] / events, "of which prefix states": rows[1] / events}
    for slot, size, count in con.execute(f"SELECT slot, sum(length(k) + 8 * 4 + length(value)), count(*) "
                                         f"FROM {name}_sets GROUP BY slot"):
        out[f"set slot {slot} ({count} members)"] = size / events
    return out


# -- ingest ---------------------------------------------------------------------------------------


def _stream_project(tmp: str, transport: str) -> None:
    with open(os.path.join(tmp, "parity.toml"), "w") as fh:
        fh.write('[project]\nname = "benchstream"\ndefinitions = "defs.py"\n')
    with open(os.path.join(tmp, "defs.py"), "w") as fh:
        fh.write(textwrap.dedent(f"""
            import parity as pt
            card = pt.Entity("card", keys={{"card_id": pt.Int64}})
            txns = pt.StreamSource(name="txns", event_time="ts", event_id="id",
                                   schema={{"id": pt.Int64, "card_id": pt.Int64, "amount": pt.Float64, "ts": pt.Timestamp}},
                                   {transport})
            velocity = pt.WindowView("velocity", entity=card, source=txns, columns={{"amount": pt.Float64}},
                                     windows=["10m", "1h", "1d", "30d"],
                                     features=[pt.Aggregate("count", pt.agg.count()),
                                               pt.Aggregate("sum", pt.agg.sum("amount"))])
        """))


def _events_json(start: int, n: int, per_message: int, now: dt.datetime) -> list[bytes]:
    messages = []
    for m in range(start, start + n, per_message):
        batch = [{"id": i, "card_id": i % 10_000, "amount": (i % 1000) / 100,
                  "ts": (now + dt.timedelta(microseconds=i)).isoformat()} for i in range(m, min(m + per_message, start + n))]
        messages.append(json.dumps(batch[0] if per_message == 1 else batch).encode())
    return messages


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _consume(tmp: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "parity", "-C", tmp, "stream", "--idle-exit", "1.0", "-q"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    elapsed = time.perf_counter() - started - 1.0  # the idle wait at the end is not work
    with open(os.path.join(tmp, ".parity", "freshness", "txns.json")) as fh:
        return elapsed, json.load(fh)


def ingest(args: argparse.Namespace) -> None:
    import nats

    out: dict[str, object] = {"machine": machine(), "events": args.events}
    now = dt.datetime.now(dt.UTC)
    for per_message in (1, 100):
        with tempfile.TemporaryDirectory() as tmp:
            run = f"{os.getpid()}{per_message}"
            _stream_project(tmp, f'nats=pt.NatsSubject("bench.{run}", stream="BENCH{run}")')
            messages = _events_json(0, args.events, per_message, now)

            async def publish() -> None:
                nc = await nats.connect("nats://127.0.0.1:4222")
                js = nc.jetstream()
                await js.add_stream(name=f"BENCH{run}", subjects=[f"bench.{run}"])
                for start in range(0, len(messages), 1000):
                    await asyncio.gather(*(js.publish(f"bench.{run}", m) for m in messages[start:start + 1000]))
                await nc.close()

            asyncio.run(publish())
            # Startup (interpreter, imports, connect) is timed too: a cold consumer draining a backlog.
            warm_start, warm_cpu = time.perf_counter(), _children_cpu()
            subprocess.run([sys.executable, "-c", "import parity.runtime.streaming, polars, nats"], check=True)
            startup, startup_cpu = time.perf_counter() - warm_start, _children_cpu() - warm_cpu
            consumer_cpu = _children_cpu()
            elapsed, fresh = _consume(tmp)
            consumer_cpu = _children_cpu() - consumer_cpu - startup_cpu
            out[f"nats {per_message}/msg events_per_s (backlog, excl. ~{startup:.1f}s startup)"] = \
                args.events / max(elapsed - startup, 1e-9)
            # "per core": the consumer's own CPU (user + system, both threads), imports excluded
            out[f"nats {per_message}/msg events_per_consumer_cpu_s"] = args.events / max(consumer_cpu, 1e-9)

            async def drop() -> None:
                nc = await nats.connect("nats://127.0.0.1:4222")
                await nc.jetstream().delete_stream(f"BENCH{run}")
                await nc.close()

            asyncio.run(drop())
    out.update(_paced_latency(args))
    out.update(_mqtt(args))
    print(json.dumps(out, indent=1))


def _mqtt(args: argparse.Namespace) -> dict[str, object]:
    """MQTT: the consumer runs while two publishers send QoS 1 messages (one event each) as fast as
    they can; the rate is events / (last commit − first commit) from the log. The publishers are
    ``mosquitto_pub -l`` (C, one message per line of a file): Python paho publishers spend more
    CPU per message than the consumer, and on two cores they, not parity, set the rate. Runs
    against the broker on 1883 (Mosquitto's defaults) and, when ``BENCH_MQTT_PORT`` names
    another, that one too (``--mqtt-events`` each)."""
    out: dict[str, object] = {}
    ports = [1883] + [int(p) for p in [os.environ.get("BENCH_MQTT_PORT", "1883")] if int(p) != 1883]
    for port in ports:
        logged, rate = _mqtt_live(args.mqtt_events, port)
        out[f"mqtt :{port} events logged of {args.mqtt_events}"] = logged
        out[f"mqtt :{port} events_per_s (2 C publishers)"] = rate
    return out


def _mqtt_live(events: int, port: int) -> tuple[int, float]:
    import polars as pl

    import parity as pt
    from parity.connectors.event_log import EventLog

    with tempfile.TemporaryDirectory() as tmp:
        run = f"{os.getpid()}{port}"
        topic = f"bench/{run}/txns"
        _stream_project(tmp, f'mqtt=pt.MqttTopic("{topic}")')
        env = {**os.environ, "PARITY_MQTT_URL": f"mqtt://127.0.0.1:{port}"}
        consumer = subprocess.Popen([sys.executable, "-m", "parity", "-C", tmp, "stream", "--idle-exit", "4", "-q"],
                                    env=env, stderr=subprocess.PIPE, text=True)
        time.sleep(3)  # subscribed
        now = dt.datetime.now(dt.UTC).isoformat()
        files = []
        for part in (0, 1):
            path = os.path.join(tmp, f"publish{part}.jsonl")
            with open(path, "w") as fh:
                for i in range(events // 2):
                    fh.write(json.dumps({"id": part * events + i, "card_id": i % 10_000, "amount": 1.0, "ts": now}) + "\n")
            files.append(path)
        publishers = []
        for part, path in enumerate(files):
            with open(path) as lines:
                publishers.append(subprocess.Popen(["mosquitto_pub", "-l", "-q", "1", "-M", "1000", "-p", str(port),
                                                    "-t", topic, "-i", f"benchpub-{run}-{part}"], stdin=lines))
        for proc in publishers:
            proc.wait(timeout=600)
        consumer.wait(timeout=600)
        project = pt.Project.load(tmp)
        log = EventLog(project.stream_source("txns"), tmp).read()
        project.close()
        times = log["_parity_ingested_at"].cast(pl.Int64)
        span = (times.max() - times.min()) / 1e6  # type: ignore[operator]
    return log.height, log.height / max(span, 1e-9)


def _paced_latency(args: argparse.Namespace) -> dict[str, object]:
    """Event → servable at a paced rate: a publisher sends events stamped at send time, batched
    100 per message, at ``--rate`` events/s while the consumer runs; p50/p99 of (the time the
    online store has applied the commit − event time) from the consumer's freshness."""
    import nats

    with tempfile.TemporaryDirectory() as tmp:
        run = f"{os.getpid()}paced"
        _stream_project(tmp, f'nats=pt.NatsSubject("bench.{run}", stream="BENCH{run}")')
        consumer = subprocess.Popen([sys.executable, "-m", "parity", "-C", tmp, "stream", "--idle-exit", "8", "-q"],
                                    stderr=subprocess.PIPE, text=True)

        async def publish() -> None:
            nc = await nats.connect("nats://127.0.0.1:4222")
            js = nc.jetstream()
            try:
                await js.add_stream(name=f"BENCH{run}", subjects=[f"bench.{run}"])
            except Exception:  # noqa: BLE001 - the consumer may have created it
                pass
            await asyncio.sleep(3)  # the consumer is up
            per_tick = max(100, args.rate // 100)  # events per 10 ms
            sent = 0
            started = time.perf_counter()
            while sent < args.events:
                now = dt.datetime.now(dt.UTC)
                batch = [{"id": sent + j, "card_id": (sent + j) % 10_000, "amount": 1.0, "ts": now.isoformat()}
                         for j in range(per_tick)]
                await asyncio.gather(*(js.publish(f"bench.{run}", json.dumps(batch[k:k + 100]).encode())
                                       for k in range(0, per_tick, 100)))
                sent += per_tick
                target = started + sent / args.rate
                await asyncio.sleep(max(0.0, target - time.perf_counter()))
            await nc.close()

        asyncio.run(publish())
        consumer.wait(timeout=300)
        with open(os.path.join(tmp, ".parity", "freshness", "txns.json")) as fh:
            fresh = json.load(fh)

        async def drop() -> None:
            nc = await nats.connect("nats://127.0.0.1:4222")
            await nc.jetstream().delete_stream(f"BENCH{run}")
            await nc.close()

        asyncio.run(drop())
    return {f"paced {args.rate}/s event_to_servable": fresh["event_to_servable"],
            f"paced {args.rate}/s receive_to_servable": fresh["receive_to_servable"]}


def paced(args: argparse.Namespace) -> None:
    out: dict[str, object] = {"machine": machine()}
    for rate in args.rate:
        out.update(_paced_latency(argparse.Namespace(events=rate * args.seconds, rate=rate)))
    print(json.dumps(out, indent=1))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] in ("_parity", "_duckdb"):
        (run_parity if sys.argv[1] == "_parity" else run_duckdb)(sys.argv[2])
        return
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="suite", required=True)
    p = sub.add_parser("offline")
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--spine", type=int, default=1_000_000)
    p.add_argument("--cards", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=1)
    p.set_defaults(run=offline)
    p = sub.add_parser("online")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--redis", action="store_true")
    p.set_defaults(run=online)
    p = sub.add_parser("ingest")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rate", type=int, default=50_000)
    p.add_argument("--mqtt-events", type=int, default=40_000)
    p.set_defaults(run=ingest)
    p = sub.add_parser("paced")  # the event → servable part of ingest alone, at one or more rates
    p.add_argument("--seconds", type=int, default=6)
    p.add_argument("--rate", type=int, nargs="+", default=[10_000, 20_000, 30_000])
    p.set_defaults(run=paced)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
