"""Shared helpers for the benchmark scripts: paths, running one engine in its own process
(wall time and peak RSS of that process alone), comparing result tables row by row."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FEAST_PYTHON = os.path.join(HERE, ".venv-feast", "bin", "python")
sys.path.insert(0, HERE)

from generate import FEATURES, SIZES, data_dir, generate  # noqa: F401


class ChildFailed(RuntimeError):
    pass


def run_child(argv: list[str], python: str = sys.executable, label: str = "", max_rss_gb: float | None = None,
              env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``python argv`` in its own process; parse the last stdout line as JSON and add the
    process's wall time and peak RSS (from wait4's rusage, so it is this child's alone).

    With ``max_rss_gb`` a watchdog kills the child (by its pid) once its resident memory passes
    that much, so a run that would exhaust the machine's memory fails alone."""
    started = time.perf_counter()
    proc = subprocess.Popen([python, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    killed: list[float] = []
    if max_rss_gb:
        import threading

        def watch() -> None:
            limit_kb = max_rss_gb * 2**20
            while proc.returncode is None:
                try:
                    with open(f"/proc/{proc.pid}/status") as fh:
                        rss = next((int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:")), 0)
                except (OSError, ValueError):
                    return
                if rss > limit_kb:
                    killed.append(time.perf_counter() - started)
                    proc.kill()
                    return
                time.sleep(0.1)

        threading.Thread(target=watch, daemon=True).start()
    # Drain pipes while waiting (communicate), then reap with wait4 for this child's rusage.
    out, err = _communicate_then_wait4(proc)
    wall = time.perf_counter() - started
    status, usage = proc._bench_status, proc._bench_usage  # type: ignore[attr-defined]
    if killed:
        raise ChildFailed(f"{label or argv[0]} killed after {killed[0]:.1f}s: resident memory passed {max_rss_gb} GB "
                          f"(peak {usage.ru_maxrss / 2**20:.1f} GB)\n{err[-1500:]}")
    if status != 0:
        raise ChildFailed(f"{label or argv[0]} failed (status {status}) after {wall:.1f}s, peak RSS "
                          f"{usage.ru_maxrss / 2**20:.1f} GB:\n{err[-4000:]}")
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{label or argv[0]} printed no result:\n{out[-2000:]}\n{err[-2000:]}")
    result = json.loads(lines[-1])
    result["process_wall_s"] = wall
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    result["stderr_tail"] = err[-1500:]
    return result


def _communicate_then_wait4(proc: subprocess.Popen) -> tuple[str, str]:
    import threading

    chunks: dict[str, list[str]] = {"out": [], "err": []}

    def pump(stream, key):  # type: ignore[no-untyped-def]
        for line in stream:
            chunks[key].append(line)
            if key == "err" and os.environ.get("BENCH_VERBOSE"):
                sys.stderr.write("    | " + line)

    threads = [threading.Thread(target=pump, args=(proc.stdout, "out")),
               threading.Thread(target=pump, args=(proc.stderr, "err"))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc._bench_status, proc._bench_usage = proc.returncode, usage  # type: ignore[attr-defined]
    return "".join(chunks["out"]), "".join(chunks["err"])


def machine() -> dict[str, object]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") + (" (src/ modified)" if git("status", "--porcelain", "--", "src") else "")
    return {"parity_commit": commit, "nproc": os.cpu_count(), "cpu": cpu, "mem_gb": round(mem_gb, 1), "python": platform.python_version(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def mismatches(reference, other, key: str, features: list[str], exclude=None) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Row-by-row comparison of two Polars frames on ``key`` (bit-exact for floats, null == null).

    Returns total mismatching rows, per-feature counts, and — when ``exclude`` (a boolean column
    of ``reference``) is given — the mismatching rows outside it.
    """
    import polars as pl

    other = other.select(key, *features).cast({f: reference.schema[f] for f in features}, strict=False)
    if other.height != reference.height:  # a sample reference: compare those rows only
        other = other.join(reference.select(key), on=key, how="semi")
    if other[key].n_unique() != other.height:
        return {"mismatched_rows": -1, "error": "duplicate row ids in the result"}
    joined = reference.join(other.rename({f: f"{f}__o" for f in features}), on=key, how="left")
    missing = reference.height - other.height
    per = {f: pl.col(f).ne_missing(pl.col(f"{f}__o")) for f in features}
    bad = pl.any_horizontal(list(per.values()))
    counts = joined.select(bad.sum().alias("__all"), *(e.sum().alias(f) for f, e in per.items())).row(0, named=True)
    out: dict[str, object] = {"mismatched_rows": int(counts.pop("__all")) , "missing_rows": int(missing),
                              "per_feature": {f: int(v) for f, v in counts.items() if v}}
    if exclude is not None:
        out["mismatched_rows_outside_full_ties"] = int(joined.filter(~pl.col(exclude).fill_null(False)).select(bad.sum()).item())
        out["mismatched_rows_on_full_ties"] = out["mismatched_rows"] - out["mismatched_rows_outside_full_ties"]  # type: ignore[operator]
    return out
