"""Materialization of a whole source into the SQLite online store, whole and in key partitions,
each in its own process (time and peak RSS), and the two stores compared key by key.

    .venv/bin/python bench/materialize.py large [--partitions 1,auto] [--max-rss-gb 17] [--view window]

``--view window`` materializes a window view over the same rows instead (its index holds every
event: count, sum, mean and distinct count over 1h and 1d of the first features).

``auto`` is what a project does by default: as many key partitions as keep the source within a
quarter of the machine's memory (``[offline] memory_budget``). Data: bench/generate.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time

from common import FEATURES, ChildFailed, generate, machine, run_child


def child(data: str, store: str, partitions: str, kind: str) -> dict[str, object]:
    import datetime as dt

    import parity as pt

    user = pt.Entity("user", keys={"user_id": pt.Int64})
    src = pt.ParquetSource("user_txn_stats", path=os.path.join(data, "feature_rows.parquet"), event_time="event_ts",
                           created_time="created_ts", as_of="event_time")
    view: pt.FeatureView | pt.WindowView
    if kind == "window":
        a = pt.agg
        view = pt.WindowView("user_windows", entity=user, source=src, windows=["1h", "1d"],
                             columns={"amount_sum_1h": pt.Float64, "last_country": pt.String},
                             features=[pt.Aggregate("n", a.count()), pt.Aggregate("total", a.sum("amount_sum_1h")),
                                       pt.Aggregate("mean", a.mean("amount_sum_1h")),
                                       pt.Aggregate("countries", a.count_distinct("last_country"))])
    else:
        view = pt.FeatureView("user_stats", entity=user, source=src,
                              features=[pt.Feature(f, getattr(pt, d)) for f, d in FEATURES.items()], max_age=None)
    steps: list[str] = []
    with tempfile.TemporaryDirectory(prefix="parity-bench-") as tmp:
        project = pt.Project.from_definitions([user, view], root=tmp, online_store_path=store,
                                              registry_path=f"{tmp}/reg.db")
        started = time.perf_counter()
        (report,) = project.materialize(until=dt.datetime(2030, 1, 1, tzinfo=dt.UTC), incremental=False,
                                        partitions=None if partitions == "auto" else int(partitions),
                                        progress=steps.append)
        seconds = time.perf_counter() - started
        project.close()
    if kind == "window":
        return {"seconds": seconds, "rows_read": report.events, "written": report.events, "steps": steps}
    return {"seconds": seconds, "rows_read": report.rows_read, "keys": report.keys,  # type: ignore[union-attr]
            "written": report.written, "steps": steps}  # type: ignore[union-attr]


def _digest(store: str) -> list[list[tuple[object, ...]]]:
    """Every table of the store but the bookkeeping ones, row by row."""
    with sqlite3.connect(store) as db:
        names = sorted(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                       if name.startswith(("fv_", "w")) or "user_stats" in name)
        tables = []
        for name in names:
            width = len(db.execute(f'SELECT * FROM "{name}" LIMIT 0').description)
            tables.append(db.execute(f'SELECT * FROM "{name}" ORDER BY {", ".join(map(str, range(1, width + 1)))}').fetchall())
        return tables


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("size", nargs="?", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--partitions", default="1,auto", help="comma-separated: a number, or auto")
    parser.add_argument("--max-rss-gb", type=float, default=None)
    parser.add_argument("--view", choices=["feature", "window"], default="feature")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    data = generate(args.size)
    me = os.path.abspath(__file__)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="parity-bench-stores-") as stores:
        for partitions in args.partitions.split(","):
            store = os.path.join(stores, f"online-{partitions}.db")
            try:
                results[partitions] = run_child([me, "--child", data, store, partitions, args.view], label=f"partitions={partitions}",
                                                max_rss_gb=args.max_rss_gb)
            except ChildFailed as exc:
                results[partitions] = {"failed": str(exc).splitlines()[0]}
                continue
            results[partitions].pop("stderr_tail", None)
            print(f"partitions={partitions}: {results[partitions]['seconds']:.2f}s, "
                  f"{results[partitions]['peak_rss_mb']:.0f} MB peak", file=sys.stderr)
        done = [p for p in results if "failed" not in results[p]]
        same = None
        if len(done) > 1:
            first = _digest(os.path.join(stores, f"online-{done[0]}.db"))
            same = all(_digest(os.path.join(stores, f"online-{p}.db")) == first for p in done[1:])
    m = machine()
    print(f"## Materialize — {args.size}, {args.view} view ({m['nproc']} cores, parity {m['parity_commit']}, {m['date_utc']})\n")
    print("| partitions | seconds | peak RSS MB | rows read | keys (window: events) written |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for p, r in results.items():
        if "failed" in r:
            print(f"| {p} | {r['failed']} | | | |")
        else:
            print(f"| {p} | {float(r['seconds']):.2f} | {float(r['peak_rss_mb']):,.0f} | {int(r['rows_read']):,} | "  # type: ignore[call-overload]
                  f"{int(r['written']):,} |")  # type: ignore[call-overload]
    if same is not None:
        print(f"\nthe stores hold the same rows, key by key: {same}")


if __name__ == "__main__":
    main()
