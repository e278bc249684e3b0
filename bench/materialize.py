"""Materialization of a whole source into the SQLite online store, whole and in key partitions,
each in its own process (time and peak RSS), and the two stores compared key by key.

    .venv/bin/python bench/materialize.py large [--partitions 1,auto] [--max-rss-gb 17]

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


def child(data: str, store: str, partitions: str) -> dict[str, object]:
    import datetime as dt

    import parity as pt

    user = pt.Entity("user", keys={"user_id": pt.Int64})
    src = pt.ParquetSource("user_txn_stats", path=os.path.join(data, "feature_rows.parquet"), event_time="event_ts",
                           created_time="created_ts", as_of="event_time")
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
    return {"seconds": seconds, "rows_read": report.rows_read, "keys": report.keys,  # type: ignore[union-attr]
            "written": report.written, "steps": steps}  # type: ignore[union-attr]


def _digest(store: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(store) as db:
        table = next(name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                     if name.startswith("fv_") or "user_stats" in name)
        return db.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("size", nargs="?", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--partitions", default="1,auto", help="comma-separated: a number, or auto")
    parser.add_argument("--max-rss-gb", type=float, default=None)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
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
                results[partitions] = run_child([me, "--child", data, store, partitions], label=f"partitions={partitions}",
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
    print(f"## Materialize — {args.size} ({m['nproc']} cores, parity {m['parity_commit']}, {m['date_utc']})\n")
    print("| partitions | seconds | peak RSS MB | rows read | keys written |")
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
