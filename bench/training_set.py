"""Training sets side by side, in one run, on the same data (bench/generate.py):

* parity ``training_set`` with ``as_of="event_time"`` (Feast's semantics) and with
  ``as_of="visible"`` (its default: a row counts once its created time has passed too);
* a hand-written DuckDB ASOF JOIN with event-time semantics (dedupe on (user_id, event_ts) keeping
  the greatest created_ts, then the later row, then ASOF) — the reference for parity event_time;
* a DuckDB reference for created-time visibility (rank rows by (event, created, row), running
  maximum of the rank over visibility time, ASOF on that) — the reference for parity visible;
* Feast 0.67 ``get_historical_features(...).to_arrow()`` on its DuckDB offline store, plain and
  with ``filter_by_created_timestamp=True`` (run from bench/.venv-feast via bench/feast_run.py).

Each engine runs in its own process, one after the other; the table gives the time of the
engine call itself (spine already in memory, result materialized as Arrow), the process's wall
time (interpreter start, imports, reading the spine, writing the result) and the process's peak
RSS. Every result is compared row by row (by spine row id, bit-exact) with its reference; on
top, a brute-force check recomputes a random sample of spine rows from the raw rows of their user.

    .venv/bin/python bench/training_set.py medium [--repeat 3] [--no-feast] [--profile]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

from common import FEAST_PYTHON, FEATURES, ChildFailed, generate, machine, mismatches, run_child

FEATS = list(FEATURES)
ENGINES = {
    "parity": "parity training_set, as_of=event_time",
    "duckdb": "hand-written DuckDB ASOF JOIN (event time)",
    "feast": "Feast 0.67 get_historical_features, DuckDB store",
    "parity_visible": "parity training_set, as_of=visible",
    "duckdb_visible": "DuckDB reference, created-time visibility",
    "feast_visible": "Feast 0.67, filter_by_created_timestamp=True",
    "parity_spark": "parity on Spark local[2], as_of=event_time, written by the executors",
    "parity_delta": "parity training_set over the same rows as a Delta table, as_of=event_time",
}
DEFAULT_ENGINES = [e for e in ENGINES if e not in ("parity_spark", "parity_delta")]  # --engines ...,parity_spark
REFERENCE = {"parity": "duckdb", "feast": "duckdb", "parity_visible": "duckdb_visible", "feast_visible": "duckdb_visible",
             "parity_spark": "duckdb", "parity_delta": "duckdb"}


# --------------------------------------------------------------------------------------------
# children (run in their own process)


def _spine(data: str):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq

    spine = pq.read_table(os.path.join(data, "spine.parquet"))
    return spine.append_column("row_id", pa.array(range(spine.num_rows), pa.int64()))


def _delta_table(data: str) -> str:
    """The feature rows as a Delta table beside the Parquet file (written once, untimed): the same
    rows in file order, in one commit, so its ingestion order is the Parquet file's."""
    path = os.path.join(data, "feature_rows.delta")
    if not os.path.exists(path):
        import pyarrow as pa
        import pyarrow.parquet as pq
        from deltalake import write_deltalake

        file = pq.ParquetFile(os.path.join(data, "feature_rows.parquet"))
        # one file (a commit's files have no order of their own: it would be the paths')
        write_deltalake(path, pa.RecordBatchReader.from_batches(file.schema_arrow, file.iter_batches(1_000_000)),
                        target_file_size=2**40)
    return path


def child_parity(data: str, out: str, as_of: str, profile: bool, delta: bool = False) -> dict[str, object]:
    import tempfile

    import pyarrow.parquet as pq

    import parity as pt

    user = pt.Entity("user", keys={"user_id": pt.Int64})
    src: pt.ParquetSource | pt.DeltaSource = pt.ParquetSource(
        "user_txn_stats", path=os.path.join(data, "feature_rows.parquet"), event_time="event_ts",
        created_time="created_ts", as_of=as_of)
    if delta:
        src = pt.DeltaSource("user_txn_stats", path=_delta_table(data), event_time="event_ts", created_time="created_ts",
                             as_of=as_of)
    view = pt.FeatureView("user_stats", entity=user, source=src,
                          features=[pt.Feature(f, getattr(pt, d)) for f, d in FEATURES.items()], max_age=None)
    t_start = time.perf_counter()
    spine = _spine(data)
    refs = [f"user.{f}" for f in FEATS]
    steps: list[tuple[float, str]] = []

    def progress(msg: str) -> None:
        steps.append((time.perf_counter(), msg))
        # Also on stderr with the current resident memory, so a run killed by the watchdog shows where it was.
        with open("/proc/self/status") as fh:
            rss = next((int(ln.split()[1]) // 1024 for ln in fh if ln.startswith("VmRSS:")), -1)
        print(f"[parity {steps[-1][0] - t_start:.1f}s, RSS {rss} MB] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="parity-bench-") as tmp:
        project = pt.Project.from_definitions([user, view], root=tmp, online_store_path=f"{tmp}/online.db",
                                              registry_path=f"{tmp}/reg.db")
        budget = os.environ.get("BENCH_MEMORY_BUDGET_MB")  # a fixed budget, for a growth series
        if budget:
            project.settings = dataclasses.replace(project.settings, offline_memory_budget=int(budget) * 2**20)
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        table = project.training_set(spine, refs, timestamp_column="ts", progress=progress)
        seconds = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            import io
            import pstats

            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(40)
            with open(out.replace(".parquet", ".profile.txt"), "w") as fh:
                fh.write(buf.getvalue())
        project.close()
    # Step timings: time from the previous progress message (or the start) to each message.
    prev, timings = started, []
    for t, msg in steps:
        timings.append([round(t - prev, 3), msg])
        prev = t
    timings.append([round(started + seconds - prev, 3), "(after last step: output columns, cast, combine_chunks)"])
    # Shape checks: one row per spine row, in spine order, spine columns unchanged.
    order_ok = table.column("row_id").to_pylist() == list(range(spine.num_rows))
    passthrough_ok = all(table.column(c).equals(spine.column(c)) for c in spine.column_names)
    result = table.select(["row_id", *refs]).rename_columns(["row_id", *FEATS])
    pq.write_table(result, out)
    return {"seconds": seconds, "rows": table.num_rows, "spine_order_ok": order_ok,
            "spine_columns_unchanged": passthrough_ok, "steps": timings}


def _tree_rss_mb() -> float:
    """Resident memory of this process and all its descendants (Spark's JVM and Python workers)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                parents[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/statm") as fh:
                rss[int(name)] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(rss.get(pid, 0) for pid in tree) / 2**20


def child_parity_spark(data: str, out: str) -> dict[str, object]:
    """parity on Spark local[2]: session start, then the training set written by the executors;
    the time split by Spark's own stage metrics (its REST API) and parity's kernel seconds."""
    import json as _json
    import shutil
    import tempfile
    import threading
    import urllib.request

    import pyarrow.parquet as pq

    import parity as pt
    from parity.runtime.spark import session

    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_mb())
            done.wait(0.25)

    threading.Thread(target=sample, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix="parity-bench-spark-")
    spine_path = os.path.join(tmp, "spine.parquet")
    pq.write_table(_spine(data), spine_path)  # with row_id, as the other engines get it (untimed)
    started = time.perf_counter()
    memory = os.environ.get("BENCH_SPARK_DRIVER_MEMORY", "3g")
    spark = session("local[2]", [("spark.driver.memory", memory), ("spark.local.dir", tmp),
                                 ("spark.sql.shuffle.partitions", "16"), ("spark.ui.enabled", "true"),
                                 ("spark.sql.files.maxPartitionBytes", "32m")])
    session_s = time.perf_counter() - started
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    src = pt.ParquetSource("user_txn_stats", path=os.path.join(data, "feature_rows.parquet"), event_time="event_ts",
                           created_time="created_ts", as_of="event_time")
    view = pt.FeatureView("user_stats", entity=user, source=src,
                          features=[pt.Feature(f, getattr(pt, d)) for f, d in FEATURES.items()], max_age=None)
    project = pt.Project.from_definitions([user, view], root=tmp, online_store_path=f"{tmp}/online.db",
                                          registry_path=f"{tmp}/reg.db")
    if os.path.exists(out):
        shutil.rmtree(out)
    run_started = time.perf_counter()
    partitions = int(os.environ.get("BENCH_SPARK_PARTITIONS", "0")) or None
    result = project.spark_training_set(spine_path, [f"user.{f}" for f in FEATS], timestamp_column="ts",
                                        spark=spark, out=out, partitions=partitions,
                                        progress=lambda m: print(f"[spark] {m}", file=sys.stderr, flush=True))
    seconds = time.perf_counter() - run_started
    done.set()
    stages = []
    try:
        ui = spark.sparkContext.uiWebUrl
        app = spark.sparkContext.applicationId
        with urllib.request.urlopen(f"{ui}/api/v1/applications/{app}/stages?status=complete", timeout=10) as resp:
            for st in _json.load(resp):
                stages.append({"name": st["name"][:60], "tasks": st["numTasks"],
                               "run_s": round(st["executorRunTime"] / 1000, 1),
                               "shuffle_write_mb": round(st["shuffleWriteBytes"] / 2**20),
                               "shuffle_read_mb": round(st["shuffleReadBytes"] / 2**20),
                               "input_mb": round(st["inputBytes"] / 2**20)})
    except OSError as exc:
        stages.append({"error": str(exc)})
    kernel = result.run.kernel_seconds()
    project.close()
    spark.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"seconds": seconds, "session_s": session_s, "kernel_cpu_s": kernel, "stages": stages,
            "tree_peak_rss_mb": peak[0], "rows": -1}


def _read(data: str, seq: bool) -> str:
    path = os.path.join(data, "feature_rows.parquet").replace("'", "''")
    return f"read_parquet('{path}'{', file_row_number = true' if seq else ''})"


def _connect():  # type: ignore[no-untyped-def]
    import duckdb

    con = duckdb.connect()
    limit = os.environ.get("BENCH_DUCKDB_MEMORY_LIMIT")
    if limit:  # DuckDB's default is 80 % of RAM; under a --max-rss-gb watchdog it must spill sooner
        con.execute(f"SET memory_limit = '{limit}'")
    return con


def child_duckdb(data: str, out: str) -> dict[str, object]:
    import pyarrow.parquet as pq

    spine = _spine(data)
    con = _connect()
    con.register("spine", spine)
    feats = ", ".join(FEATS)
    d_feats = ", ".join(f"d.{f}" for f in FEATS)
    # Same rule as Feast and parity's as_of="event_time": the latest event_ts <= ts per user; ties on
    # event_ts broken by the greatest created_ts, then the later row in the file. ASOF JOIN picks
    # an arbitrary row among equal times, so (user_id, event_ts) is made unique first.
    query = f"""
        WITH d AS (
            SELECT user_id, event_ts, {feats}
            FROM {_read(data, True)}
            QUALIFY row_number() OVER (PARTITION BY user_id, event_ts
                                       ORDER BY created_ts DESC, file_row_number DESC) = 1
        )
        SELECT s.row_id, {d_feats}
        FROM spine s ASOF LEFT JOIN d ON s.user_id = d.user_id AND s.ts >= d.event_ts
    """
    started = time.perf_counter()
    table = con.sql(query).to_arrow_table()
    seconds = time.perf_counter() - started
    # Untimed: which spine rows got a row from a full tie (same user, event_ts and greatest
    # created_ts) — the only rows where an engine without a row-order tie-break may differ.
    ties = con.sql(f"""
        WITH r AS (SELECT user_id, event_ts, created_ts FROM {_read(data, False)}),
        g AS (SELECT user_id, event_ts, max(created_ts) AS mc FROM r GROUP BY ALL),
        t AS (SELECT r.user_id, r.event_ts, count(*) AS n FROM r JOIN g USING (user_id, event_ts)
              WHERE r.created_ts = g.mc GROUP BY ALL)
        SELECT s.row_id, coalesce(t.n > 1, false) AS full_tie
        FROM spine s ASOF LEFT JOIN t ON s.user_id = t.user_id AND s.ts >= t.event_ts
    """).to_arrow_table()
    pq.write_table(table, out)
    pq.write_table(ties, out.replace(".parquet", ".ties.parquet"))
    return {"seconds": seconds, "rows": table.num_rows}


def child_duckdb_visible(data: str, out: str) -> dict[str, object]:
    import pyarrow.parquet as pq

    spine = _spine(data)
    con = _connect()
    con.register("spine", spine)
    feats = ", ".join(FEATS)
    k_feats = ", ".join(f"k.{f}" for f in FEATS)
    # Visible at t: event_ts <= t and created_ts <= t. Chosen: the greatest (event, created, row)
    # among visible rows. Rows get their rank in that order; a running maximum of the rank over
    # visibility time (max(event, created)) gives the best row known at each instant; ASOF on it.
    query = f"""
        WITH k AS (
            SELECT user_id, event_ts, created_ts, {feats},
                   greatest(event_ts, coalesce(created_ts, event_ts)) AS vis,
                   row_number() OVER (PARTITION BY user_id ORDER BY event_ts, coalesce(created_ts, event_ts),
                                      file_row_number) AS rk,
                   count(*) OVER (PARTITION BY user_id, event_ts, created_ts) > 1 AS full_tie
            FROM {_read(data, True)}
        ),
        i AS (
            SELECT user_id, vis, max(rk) OVER (PARTITION BY user_id ORDER BY vis, rk
                                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS best
            FROM k
        ),
        i1 AS (SELECT user_id, vis, max(best) AS best FROM i GROUP BY ALL),
        j AS (
            SELECT s.row_id, s.user_id, i1.best
            FROM spine s ASOF LEFT JOIN i1 ON s.user_id = i1.user_id AND s.ts >= i1.vis
        )
        SELECT j.row_id, {k_feats}, coalesce(k.full_tie, false) AS full_tie
        FROM j LEFT JOIN k ON j.user_id = k.user_id AND j.best = k.rk
    """
    started = time.perf_counter()
    table = con.sql(query).to_arrow_table()
    seconds = time.perf_counter() - started
    pq.write_table(table.drop_columns(["full_tie"]), out)
    pq.write_table(table.select(["row_id", "full_tie"]), out.replace(".parquet", ".ties.parquet"))
    return {"seconds": seconds, "rows": table.num_rows}


# --------------------------------------------------------------------------------------------
# brute-force sample check (parent process)


def brute_force_sample(data: str, n: int, seed: int = 11):  # type: ignore[no-untyped-def]
    """For ``n`` random spine rows: the chosen row under both visibility rules, computed the
    plain way (all rows of the user, filter visible, take the greatest (event, created, row))."""
    import polars as pl

    spine = pl.read_parquet(os.path.join(data, "spine.parquet")).with_row_index("row_id").with_columns(
        pl.col("row_id").cast(pl.Int64))
    sample = spine.sample(n=min(n, spine.height), seed=seed)
    rows = (pl.scan_parquet(os.path.join(data, "feature_rows.parquet")).with_row_index("seq")
            .filter(pl.col("user_id").is_in(sample["user_id"].unique().implode())).collect())
    pairs = sample.join(rows, on="user_id", how="inner")
    out = {}
    for name, visible in (("event_time", pl.col("event_ts") <= pl.col("ts")),
                          ("visible", (pl.col("event_ts") <= pl.col("ts")) & (pl.col("created_ts") <= pl.col("ts")))):
        best = (pairs.filter(visible).sort("row_id", "event_ts", "created_ts", "seq")
                .group_by("row_id", maintain_order=True).last().select("row_id", *FEATS))
        out[name] = sample.select("row_id").join(best, on="row_id", how="left")
    return out


# --------------------------------------------------------------------------------------------
# parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("size", nargs="?", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--users", choices=["skewed", "uniform"], default="skewed", help="data variant (bench/generate.py --users)")
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES), help=f"comma-separated subset of {list(ENGINES)}")
    parser.add_argument("--no-feast", action="store_true", help="leave Feast out")
    parser.add_argument("--feast-python", default=FEAST_PYTHON)
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine (fresh process each); median reported")
    parser.add_argument("--feast-repeat", type=int, default=1, help="runs per Feast engine (slow; default 1)")
    parser.add_argument("--sample", type=int, default=5000, help="spine rows in the brute-force check")
    parser.add_argument("--profile", action="store_true", help="cProfile parity's training_set (written next to the outputs)")
    parser.add_argument("--max-rss-gb", type=float, default=None,
                        help="kill an engine whose resident memory passes this (and cap DuckDB's memory_limit below it)")
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        engine, data, out = args.child
        if engine == "parity":
            result = child_parity(data, out, "event_time", args.profile)
        elif engine == "parity_visible":
            result = child_parity(data, out, "visible", args.profile)
        elif engine == "parity_delta":
            result = child_parity(data, out, "event_time", args.profile, delta=True)
        elif engine == "parity_spark":
            result = child_parity_spark(data, out)
        elif engine == "duckdb":
            result = child_duckdb(data, out)
        else:
            result = child_duckdb_visible(data, out)
        print(json.dumps(result))
        return

    engines = [e for e in args.engines.split(",") if e]
    if args.no_feast or not os.path.exists(args.feast_python):
        if not args.no_feast:
            print(f"no Feast interpreter at {args.feast_python}: Feast left out (see bench/README.md)", file=sys.stderr)
        engines = [e for e in engines if not e.startswith("feast")]
    data = generate(args.size, dist=args.users)
    if "parity_delta" in engines:
        _delta_table(data)  # written here, once: no child's time or memory counts it
    outdir = os.path.join(data, "out")
    os.makedirs(outdir, exist_ok=True)
    me = os.path.abspath(__file__)
    feast_script = os.path.join(os.path.dirname(me), "feast_run.py")
    results: dict[str, dict[str, object]] = {}
    failed: dict[str, str] = {}
    run_started = time.time()
    env = {"BENCH_DUCKDB_MEMORY_LIMIT": f"{args.max_rss_gb * 0.7:.1f}GB"} if args.max_rss_gb else None
    for engine in engines:
        out = os.path.join(outdir, f"{engine}.parquet")
        runs = []
        repeat = args.feast_repeat if engine.startswith("feast") else args.repeat
        for i in range(repeat):
            try:
                if engine.startswith("feast"):
                    argv = [feast_script, "historical", data, out] + (["--visible"] if engine == "feast_visible" else [])
                    r = run_child(argv, python=args.feast_python, label=engine, max_rss_gb=args.max_rss_gb)
                else:
                    argv = [me, "--child", engine, data, out] + (["--profile"] if args.profile else [])
                    r = run_child(argv, label=engine, max_rss_gb=args.max_rss_gb, env=env)
            except ChildFailed as exc:
                failed[engine] = str(exc).splitlines()[0]
                print(f"{engine}: {exc}", file=sys.stderr)
                break
            if args.profile and engine.startswith("parity"):
                print(f"cProfile of {engine}: {out.replace('.parquet', '.profile.txt')}", file=sys.stderr)
            r.pop("stderr_tail", None)
            if "tree_peak_rss_mb" in r:  # Spark: the JVM and its Python workers are this child's descendants
                r["peak_rss_mb"] = r["tree_peak_rss_mb"]
            runs.append(r)
            print(f"{engine} run {i + 1}/{repeat}: {r['seconds']:.2f}s engine, {r['process_wall_s']:.2f}s process, "
                  f"{r['peak_rss_mb']:.0f} MB peak", file=sys.stderr)
        if not runs:
            continue
        merged = dict(runs[-1])
        merged["seconds_runs"] = [round(float(r["seconds"]), 3) for r in runs]  # type: ignore[arg-type]
        merged["seconds"] = statistics.median(float(r["seconds"]) for r in runs)  # type: ignore[arg-type]
        merged["process_wall_s"] = statistics.median(float(r["process_wall_s"]) for r in runs)  # type: ignore[arg-type]
        merged["peak_rss_mb"] = max(float(r["peak_rss_mb"]) for r in runs)  # type: ignore[arg-type]
        results[engine] = merged

    # ---- correctness
    import polars as pl

    def load(name: str) -> pl.DataFrame:
        path = os.path.join(outdir, f"{name}.parquet")
        if os.path.isdir(path):  # written by Spark: the spine's columns, then the features by reference
            frame = pl.read_parquet(os.path.join(path, "*.parquet"))
            return frame.select("row_id", *[pl.col(f"user.{f}").alias(f) for f in FEATS])
        return pl.read_parquet(path)

    checks: dict[str, dict[str, object]] = {}
    for engine, ref in REFERENCE.items():
        if engine in results and ref in results:
            ties = pl.read_parquet(os.path.join(outdir, f"{ref}.ties.parquet"))
            reference = load(ref).join(ties, on="row_id")
            checks[engine] = mismatches(reference, load(engine), "row_id", FEATS, exclude="full_tie")
            checks[engine]["reference"] = ref
            checks[engine]["full_tie_spine_rows"] = int(ties["full_tie"].sum())
    brute = brute_force_sample(data, args.sample)
    for engine in results:
        semantics = "visible" if engine.endswith("visible") else "event_time"
        m = mismatches(brute[semantics], load(engine), "row_id", FEATS)
        checks.setdefault(engine, {})["brute_force_sample"] = {"rows": brute[semantics].height, "mismatched_rows": m["mismatched_rows"]}

    # ---- report
    report = {"size": args.size + ("" if args.users == "skewed" else f" ({args.users} users)"), "machine": machine(),
              "command": " ".join(sys.argv), "repeat": args.repeat, "feast_repeat": args.feast_repeat,
              "results": results, "failed": failed, "checks": checks, "total_s": round(time.time() - run_started, 1)}
    with open(os.path.join(data, f"training_set-{args.size}.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    print(format_report(report))


def format_report(report: dict) -> str:  # type: ignore[type-arg]
    res, checks = report["results"], report["checks"]
    base = res.get("parity", {}).get("seconds")
    m = report["machine"]
    lines = [(f"\n## Training set — {report['size']} ({m['date_utc']}, {m['nproc']} cores; median of {report['repeat']} "
              f"run(s), Feast {report['feast_repeat']}; parity {m['parity_commit']})\n"),
             ("| engine | engine call s | × parity (event_time) | process wall s | peak RSS MB | mismatched rows vs reference | "
              "… outside full ties | brute-force sample |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in res.items():
        c = checks.get(name, {})
        ratio = f"{r['seconds'] / base:.2f}" if base else "—"
        if name in REFERENCE:
            rows = r["rows"] if r["rows"] >= 0 else res.get(REFERENCE[name], {}).get("rows", 0)
            mm = f"{c.get('mismatched_rows')} / {rows:,} (vs {REFERENCE[name]})"
            outside = str(c.get("mismatched_rows_outside_full_ties"))
        else:
            mm, outside = "reference", "—"
        bf = c.get("brute_force_sample", {})
        lines.append(f"| {ENGINES[name]} | {r['seconds']:.2f} | {ratio} | {r['process_wall_s']:.1f} | {r['peak_rss_mb']:,.0f} "
                     f"| {mm} | {outside} | {bf.get('mismatched_rows')}/{bf.get('rows')} |")
    for name in ("parity", "parity_visible"):
        if name in res:
            lines.append(f"\n{name}: spine order kept = {res[name]['spine_order_ok']}, spine columns unchanged = "
                         f"{res[name]['spine_columns_unchanged']}; steps (s): "
                         + "; ".join(f"{s} {m}" for s, m in res[name]["steps"]))
    if "parity_spark" in res:
        r = res["parity_spark"]
        lines.append(f"\nparity_spark: session start {r['session_s']:.1f} s (not in the engine call); parity's kernels "
                     f"{r['kernel_cpu_s']:.1f} CPU s over all tasks; Spark stages (executor run time over tasks, "
                     f"shuffle written/read):")
        for st in r["stages"]:
            if "error" in st:
                lines.append(f"- stage metrics unavailable: {st['error']}")
                continue
            lines.append(f"- {st['name']}: {st['tasks']} tasks, {st['run_s']} s, input {st['input_mb']:,} MB, "
                         f"shuffle {st['shuffle_write_mb']:,} / {st['shuffle_read_mb']:,} MB")
    for name, c in checks.items():
        if c.get("per_feature"):
            lines.append(f"{name}: mismatches per feature {c['per_feature']}")
    for name, why in report.get("failed", {}).items():
        lines.append(f"{name}: FAILED — {why}")
    lines.append(f"\ntotal benchmark time {report['total_s']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
