"""``parity monitor``: the served-value log watched against each feature version's baseline.

The log's rows served in [since, until) are read (closed parts), each logged value is decoded by its
feature's dtype (``semantics.wire``) and filed under the feature version it was served at; each
version is bucketed and checked against its reference baseline (``runtime.baselines.reference_baseline``:
the newest of at least 1,000 rows) on its fixed bins (``monitor.watch``),
the verdicts are kept in the monitoring store as result points (one per metric, feature version and
bucket: a run over the same buckets replaces them), and ``monitor.report`` renders the HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from parity.connectors.feature_log_parquet import cell, served_in
from parity.define.dtypes import DType
from parity.define.dtypes import parse as parse_dtype
from parity.errors import DataError, ParityError
from parity.monitor.bins import Bins
from parity.monitor.profile import Profile, profile
from parity.monitor.skew import NOT_COMPARED
from parity.monitor.watch import FeatureWatch, watch_feature, window_label
from parity.ports.monitor_store import MonitorStore, Point
from parity.ports.source import view_scan
from parity.registry.versions import Versions
from parity.runtime.baselines import reference_baseline
from parity.runtime.project import Project
from parity.semantics import ordering, reading
from parity.semantics.expectations import Violation, check_freshness
from parity.semantics.time import now_micros
from parity.semantics.values import polars_type, to_storage
from parity.semantics.wire import from_json

HOUR_US = 3_600_000_000


@dataclass
class MonitorRun:
    since_us: int
    until_us: int
    bucket_us: int
    rows: int
    watches: list[FeatureWatch] = field(default_factory=list)
    freshness: list[tuple[str, int | None, float, int, list[Violation]]] = field(default_factory=list)
    undefined: dict[str, int] = field(default_factory=dict)  # logged features no longer defined: values
    undecodable: dict[str, int] = field(default_factory=dict)  # logged values their dtype cannot read

    def lines(self) -> list[str]:
        out = [(f"{self.rows:,} logged rows, {len(self.watches)} feature versions, buckets of "
               f"{self.bucket_us / HOUR_US:g} h")]
        width = max((len(w.feature) for w in self.watches), default=0)
        for w in self.watches:
            drifts = sum(r.status == "drift" for r in w.drift)
            bursts = sum(r.status == "drift" for r in w.nulls)
            quiet = sum(r.status == "insufficient_data" for r in w.drift)
            detail = ("no baseline: build a training set with it" if w.bins is None else
                      f"drift in {drifts}/{len(w.drift)} buckets, null bursts in {bursts}, "
                      f"{quiet} with too few values")
            out.append(f"  {w.feature:<{width}} @{w.version}  {w.status:<17} {w.served:>8,} values  {detail}")
            for what, (start, _), result in w.alarms()[:3]:
                moved = ", ".join(str(c["bin"]) for c in result.contributors)
                out.append(f"      {what} from {window_label(start)}: {result.method} {result.value:.3g} > "
                           f"{result.threshold:.3g} (moved most: {moved})")
            for bucket, broken in enumerate(w.breaches):
                for v in broken[:2]:
                    out.append(f"      breach from {window_label(w.windows[bucket][0])}: {v.describe()}")
        for ref, n in sorted(self.undefined.items()):
            out.append(f"  {ref}: {n:,} logged values not watched: no longer defined, or an old version "
                       "without a baseline")
        for ref, n in sorted(self.undecodable.items()):
            out.append(f"  {ref}: {n:,} logged values not watched: not readable as the feature's dtype")
        for view, _newest, _limit, _at, broken in self.freshness:
            out.append(f"  freshness of {view}: " + ("; ".join(v.describe() for v in broken) if broken else "ok"))
        return out


def watch_log(project: Project, log: pa.Table, *, since_us: int | None = None, until_us: int | None = None,
              bucket_us: int = HOUR_US, features: Sequence[str] | None = None, record: bool = True,
              now_us: int | None = None, reference: pl.DataFrame | None = None,
              fixed_reference: tuple[pl.DataFrame, str] | None = None) -> MonitorRun:
    """Watch the log's rows served in [since, until) against each version's training-set baseline
    (``reference_baseline``), or against ``reference`` (log rows of a past window), or against
    ``fixed_reference`` (a table whose columns are named by feature, as a training set's are, and
    what it is called); sources' freshness is judged at ``now_us`` (default: now)."""
    if reference is not None and fixed_reference is not None:
        raise DataError("monitor: give a past window or a reference file to compare with, not both")
    if bucket_us <= 0:
        raise DataError("monitor bucket: give a positive length of time, e.g. 1h")
    if since_us is not None and until_us is not None and until_us <= since_us:
        raise DataError("monitor: --until must be after --since")
    frame = pl.from_arrow(log)
    assert isinstance(frame, pl.DataFrame)
    frame = served_in(frame, since_us, until_us)
    if frame.height == 0:
        start = since_us if since_us is not None else 0
        run = MonitorRun(start, until_us if until_us is not None else start, bucket_us, 0)
        run.freshness = check_freshness_of(project, now_us if now_us is not None else now_micros())
        return run
    first, last = int(frame["served_at_us"].min()), int(frame["served_at_us"].max())  # type: ignore[arg-type]
    # buckets lie on multiples of their length from the epoch, whatever the range, so runs over
    # overlapping ranges produce the same windows (and replace each other's points)
    start = (since_us if since_us is not None else first) // bucket_us * bucket_us
    end = -(-(until_us if until_us is not None else last + 1) // bucket_us) * bucket_us
    wanted = None if features is None else set(features)
    run = MonitorRun(start, end, bucket_us, frame.height)
    store = project.monitor_store()
    current: dict[str, str] = {}
    decoders: dict[tuple[str, str], DType | None] = {}
    served = _served(project, frame, wanted, run, store, decoders, current)
    past = None if reference is None else _served(project, reference, wanted, run, store, decoders, current)
    if fixed_reference is not None and served and not {ref for ref, _ in served} & set(fixed_reference[0].columns):
        raise DataError(f"{fixed_reference[1]} has no column named by a watched feature (its columns: "
                        f"{fixed_reference[0].columns[:10]}; watched: {sorted({ref for ref, _ in served})[:10]}); "
                        "name its columns by feature, as a training set's are")
    for (ref, version), (found, when) in sorted(served.items()):
        definition = project.catalog.feature_at(project.catalog.parse(ref))
        dtype = decoders[(ref, version)]
        assert dtype is not None
        fixed = store.bins(ref, version)
        bins = None if fixed is None else Bins.from_dict(dict(fixed))
        baseline: Profile | None = None
        if past is not None:  # a past window of served values is the reference instead
            before = pl.Series(ref, past.get((ref, version), ([], []))[0], dtype=polars_type(dtype))
            bins, baseline = _against(dtype, bins, before)
            origin = f"served values of the reference window ({len(before):,})"
        elif fixed_reference is not None:  # a fixed reference: its column of this feature, read as its dtype
            table, name = fixed_reference
            if current.get(ref) != version:  # a file is of the definitions now: an older version is not compared
                origin = f"an older version: {name} is compared with the current one only"
            elif (fixed_column := reference_column(table, ref, dtype, name)) is None:
                origin = f"not a column of {name}"
            else:
                bins, baseline = _against(dtype, bins, fixed_column)
                origin = f"{name} ({len(fixed_column):,} rows)"
        else:  # the training set's baseline
            chosen = reference_baseline(store.baselines(ref, version))
            baseline = None if chosen is None else Profile.from_dict(dict(chosen.profile))
            origin = "" if chosen is None else chosen.origin
        column = pl.Series(ref, found, dtype=polars_type(dtype))
        watched = watch_feature(ref, version, repr(dtype), column, np.asarray(when, dtype=np.int64),
                                since_us=start, until_us=end, bucket_us=bucket_us, bins=bins, baseline=baseline,
                                baseline_origin=origin,
                                expectations=definition.feature.expect if current.get(ref) == version else ())
        run.watches.append(watched)
        if record:
            store.record(watched.points())
    run.freshness = check_freshness_of(project, now_us if now_us is not None else now_micros())
    if record and run.freshness:
        store.record([Point("freshness", f"view {view}", "", at_us, at_us,
                            None if newest is None else (at_us - newest) / 1e6, limit, "breach" if broken else "ok",
                            {"broken": [v.describe() for v in broken]})
                      for view, newest, limit, at_us, broken in run.freshness])
    return run


def reference_column(table: pl.DataFrame, ref: str, dtype: DType, name: str) -> pl.Series | None:
    """A fixed reference's values of feature ``ref`` as its dtype, read by the one reading rule
    (``semantics.reading``: what a source column may hold), or None when it has no such column."""
    if ref not in table.columns:
        return None
    where = f"{name}, column {ref!r}"
    raw = table.schema[ref]
    wire = reading.check_readable(reading.wire_of_polars(raw), dtype, where=f"{where} (feature {ref})", raw=raw)
    vector = reading.vector_reader(wire, dtype, raw, pl.col(ref), reading.Context(where, None))
    read = table.select(vector.value.alias(ref), *([] if vector.bad is None else [vector.bad.alias("bad")]))
    if vector.bad is not None and read["bad"].any():
        row = int(read["bad"].arg_max())  # type: ignore[arg-type]
        raise DataError(f"{where}, row {row}: {table[ref][row]!r} does not fit feature {ref} ({dtype!r}); "
                        "fix the file, or compare with a training set's own file")
    return read[ref]


def _against(dtype: DType, bins: Bins | None, before: pl.Series) -> tuple[Bins | None, Profile | None]:
    """A reference's profile on the version's fixed bins — or, when the version has none yet, on
    bins fitted to the reference for this run only (only a training set fixes a version's bins:
    an arbitrary file or window must not decide how its later baselines are counted)."""
    if bins is None and len(before):
        fitted = Bins.from_baseline(before, repr(dtype))
        bins = fitted if fitted.size > 1 else None
    return bins, None if bins is None else profile(before, bins)


def _served(project: Project, frame: pl.DataFrame, wanted: set[str] | None, run: MonitorRun, store: MonitorStore,
            decoders: dict[tuple[str, str], DType | None], current: dict[str, str]
            ) -> dict[tuple[str, str], tuple[list[object], list[int]]]:
    """Every logged value of ``frame`` per (feature, version), decoded by that version's dtype, with
    when it was served; masked, undecodable and unknown ones counted in ``run``."""
    served: dict[tuple[str, str], tuple[list[object], list[int]]] = {}
    for (versions_text,), group in frame.group_by("versions", maintain_order=True):
        logged = cell(versions_text, "versions")
        values = [cell(text, "values") for text in group["values"]]
        statuses = [None if text is None else cell(text, "statuses") for text in group["statuses"]]
        times = group["served_at_us"].to_list()
        for ref, logged_version in logged.items():
            if wanted is not None and ref not in wanted:
                continue
            version = str(logged_version)
            dtype = _dtype_of(project, store, ref, version, decoders, current)
            if dtype is None:  # no longer defined, or an old version whose dtype is not known
                run.undefined[ref] = run.undefined.get(ref, 0) + group.height
                continue
            wire = repr(dtype)
            entry = served.setdefault((ref, version), ([], []))
            for i, row in enumerate(values):
                status = statuses[i]
                if status is not None and status.get(ref) == NOT_COMPARED:
                    continue  # logged masked, without its value
                try:  # the one reading of a wire value (semantics.wire), checked by the dtype's rule
                    value = from_json(row.get(ref), wire)
                    to_storage(dtype, value, where=ref)
                except (DataError, TypeError, ValueError):
                    run.undecodable[ref] = run.undecodable.get(ref, 0) + 1
                    continue
                entry[0].append(value)
                entry[1].append(times[i])
    return served


def _dtype_of(project: Project, store: MonitorStore, ref: str, version: str,
              known: dict[tuple[str, str], DType | None], current: dict[str, str]) -> DType | None:
    """The dtype values of ``ref`` were served in at ``version``: the definition's at its current
    version, the one its bins were fixed with at an older one (None: not known, not watched)."""
    if (ref, version) not in known:
        found: DType | None = None
        try:
            fd = project.catalog.feature_at(project.catalog.parse(ref))
        except ParityError:
            fd = None
        if fd is not None:
            current[ref] = Versions(project.catalog).version(fd)
            if current[ref] == version:
                found = fd.dtype
            else:
                fixed = store.bins(ref, version)
                found = None if fixed is None else parse_dtype(str(fixed["dtype"]))
        known[(ref, version)] = found
    return known[(ref, version)]


def check_freshness_of(project: Project, at_us: int) -> list[tuple[str, int | None, float, int, list[Violation]]]:
    """Per view declaring a freshness: (view, newest event, the limit in seconds, when, what broke)."""
    out = []
    for name, view in sorted(project.catalog.views.items()):
        if view.freshness is None:
            continue
        rows = project.reader(view.source).scan(view_scan(view, [])).rows
        newest = rows[ordering.EVENT].max() if rows.height else None
        newest_us = None if newest is None else int(newest)  # type: ignore[arg-type]
        out.append((name, newest_us, view.freshness.total_seconds(), at_us,
                    check_freshness(view, newest_us, at_us)))
    return out
