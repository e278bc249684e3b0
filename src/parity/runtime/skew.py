"""``parity skew``: replay logged online requests through the offline engine and measure the skew.

A sample of the served-value log (``monitor.feature_log``) is grouped by what each request asked
(its features and their versions when served); each group becomes one spine — the logged entity
keys at the logged request times — and one ``Project.training_set`` with statuses, which is what
training on those requests would have seen. ``monitor.skew`` compares value by value and, for the
values that differ, reads the rows of each source in the feature's lineage for those entity keys
(one scan per source, without a visibility bound: rows created after serving are evidence) to name
the likely cause.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson
import polars as pl
import pyarrow as pa

from parity.define.dtypes import DType
from parity.errors import DataError, ParityError
from parity.monitor.skew import NOT_COMPARED, Mismatch, Served, SkewReport, SourceRows, diagnose, differs
from parity.plan.nodes import Compute, Lookup, Plan, Step, WindowRead
from parity.ports.source import view_scan, window_scan
from parity.registry.versions import Versions
from parity.runtime.project import STATUS_SUFFIX, Project
from parity.semantics import keys as key_rule
from parity.semantics import ordering, visibility
from parity.semantics.values import arrow_type, from_storage
from parity.semantics.wire import from_json

_TIME = "_parity_request_time"  # the replay spine's time column (no entity key is named so)


@dataclass
class _Pending:
    served: Served
    offline: object
    offline_status: str | None
    key: tuple[object, ...]  # the entity's root keys in canonical storage form, for finding its source rows


def replay(project: Project, log: pa.Table, *, sample: int | None = 10_000, seed: int = 0,
           since_us: int | None = None, until_us: int | None = None, examples: int = 3,
           progress: Callable[[str], None] = lambda message: None) -> SkewReport:
    """Skew of ``log``'s rows served in [since, until) — a seeded sample of ``sample`` rows (None: all)."""
    if sample is not None and sample < 1:
        raise DataError(f"skew sample {sample}: give a positive number of logged rows (or none for all)")
    if examples < 0:
        raise DataError(f"skew examples {examples}: give 0 or more")
    started = time.perf_counter()
    frame = pl.from_arrow(log)
    assert isinstance(frame, pl.DataFrame)
    if since_us is not None:
        frame = frame.filter(pl.col("served_at_us") >= since_us)
    if until_us is not None:
        frame = frame.filter(pl.col("served_at_us") < until_us)
    if sample is not None and frame.height > sample:
        frame = frame.sample(n=sample, seed=seed)
    frame = frame.sort("served_at_us", "request_id", "row")
    report = SkewReport(rows=frame.height, requests=frame["request_id"].n_unique() if frame.height else 0)
    versions = Versions(project.catalog)
    for (versions_text,), group in frame.group_by("versions", maintain_order=True):
        _replay_group(project, versions, str(versions_text), group, report, examples, progress)
    report.seconds = time.perf_counter() - started
    return report


def _replay_group(project: Project, versions: Versions, versions_text: str, group: pl.DataFrame,
                  report: SkewReport, examples: int, progress: Callable[[str], None]) -> None:
    catalog = project.catalog
    logged_versions: dict[str, str | None] = orjson.loads(versions_text)
    known, dtypes = [], {}
    for ref in logged_versions:
        try:
            dtypes[ref] = catalog.feature_at(catalog.parse(ref)).dtype
            known.append(ref)
        except ParityError:
            report.undefined[ref] += group.height
    if not known:
        return
    plan = project.plan(known)
    key_types = {k: d for root, _ in plan.roots for k, d in catalog.entities[root].keys.items()}
    entities = [orjson.loads(text) for text in group["entity"]]
    key_values = {k: [from_json(e.get(k), repr(d)) for e in entities] for k, d in key_types.items()}
    spine = pa.table({**{k: pa.array(v, arrow_type(key_types[k])) for k, v in key_values.items()},
                      _TIME: group["request_time_us"].to_arrow().cast(pa.timestamp("us", tz="UTC"))})
    progress(f"replaying {group.height:,} logged rows of {', '.join(known)}")
    table = project.training_set(spine, known, timestamp_column=_TIME, with_status=True)
    values = [orjson.loads(text) for text in group["values"]]
    statuses = [None if text is None else orjson.loads(text) for text in group["statuses"]]
    ids, times, served_at = group["request_id"].to_list(), group["request_time_us"].to_list(), group["served_at_us"].to_list()
    current = {ref: versions.version(catalog.feature_at(catalog.parse(ref))) for ref in known}
    pending: dict[str, list[_Pending]] = {}
    for ref in known:
        feature = report.feature(ref)
        wire = repr(dtypes[ref])
        offline, offline_status = table.column(ref).to_pylist(), table.column(ref + STATUS_SUFFIX).to_pylist()
        version = logged_versions.get(ref)
        for i in range(group.height):
            logged = statuses[i]
            status = None if logged is None else logged.get(ref)
            if status == NOT_COMPARED:
                feature.not_compared += 1
                continue
            feature.compared += 1
            value = from_json(values[i].get(ref), wire)
            if differs(value, status, offline[i], offline_status[i]):
                served = Served(ref, ids[i], entities[i], times[i], served_at[i], value, status, version)
                pending.setdefault(ref, []).append(_Pending(served, offline[i], offline_status[i], tuple(
                    key_rule.request_key(d, key_values[k][i], k) for k, d in key_types.items())))
    if not pending:
        return
    histories = _histories(project, plan, {key_rule.encode(p.key): p.key for found in pending.values() for p in found})
    for ref, found in pending.items():
        feature = report.feature(ref)
        lineage = _lineage(plan, dict(plan.outputs)[ref])
        for p in found:
            sources = [_rows_of(histories, tag, key_rule.encode(p.key), own) for tag, own in lineage]
            cause, detail = diagnose(p.served, current[ref], sources)
            feature.mismatches += 1
            feature.causes[cause] += 1
            if len(feature.examples) < examples:
                feature.examples.append(Mismatch(ref, p.served.request_id, p.served.entity, p.served.request_time_us,
                                                 p.served.served_at_us, p.served.value, p.served.status, p.offline,
                                                 p.offline_status, cause, detail))


def _lineage(plan: Plan, column_id: str) -> list[tuple[str, str | None]]:
    """The views a column is computed from, on the root's own keys: (view, the column's own source
    column when the column is read straight from that view)."""
    producer: dict[str, Step] = {}
    for made in plan.steps:
        if isinstance(made, Compute):
            producer.update({cid: made for _, cid, _ in made.outputs})
        else:
            producer.update({o.column_id: made for o in made.outputs})
    found: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    todo = [column_id]
    while todo:
        cid = todo.pop()
        step: Step | None = producer.get(cid)
        if step is None or cid in seen:
            continue
        seen.add(cid)
        if isinstance(step, Compute):
            todo.extend(c for _, c in step.inputs)
        elif not step.keys.hops:  # a relationship's rows are keyed by another entity: not searched
            own = next((o.feature for o in step.outputs if o.column_id == cid), None) \
                if isinstance(step, Lookup) and cid == column_id else None
            entry = (_tag(step), own)
            if entry not in found:
                found.append(entry)
    return found


@dataclass
class _ViewRows:
    """One lineage view's rows of the wanted keys: per key, (event times, created times, columns)."""

    uses_created: bool
    by_key: dict[bytes, tuple[list[int], list[int | None], dict[str, list[object]]]]
    synced: dict[bytes, int | None]  # when the online store last held each key's value current


def _histories(project: Project, plan: Plan, wanted: Mapping[bytes, tuple[object, ...]]) -> dict[str, _ViewRows]:
    """The rows of every lineage view of ``plan`` for the ``wanted`` entity keys (encoded, and in
    canonical storage form), in the row order: one scan per view, with no visibility bound (a row
    created after serving is evidence). The scans' key columns are in canonical storage form, as
    request keys are, so both encode alike."""
    out: dict[str, _ViewRows] = {}
    catalog = project.catalog
    for step in plan.steps:
        if isinstance(step, Compute) or step.keys.hops:
            continue
        tag = _tag(step)
        if tag in out:
            continue
        if isinstance(step, Lookup):
            view = catalog.views[step.view]
            source, dtypes = view.source, {f.name: f.dtype for f in view.features}
            rows = project._reader(source).scan(view_scan(view, list(dtypes))).rows
        else:
            window = catalog.window_views[step.view]
            source, dtypes = window.source, {}
            rows = project._reader(source).scan(window_scan(window, [])).rows
        rows = rows.sort(ordering.row_order(rows.columns))
        columns = {name: _python(rows[name], dtype) for name, dtype in dtypes.items()}
        events, created = rows[ordering.EVENT].to_list(), rows[ordering.CREATED].to_list()
        synced: dict[bytes, int | None] = {}
        if isinstance(step, Lookup):  # a window index has no per-key mark
            encoded = list(wanted)
            marks = project.online_store().read_synced(project.table_of[step.view], [wanted[k] for k in encoded])
            synced = dict(zip(encoded, marks))
        found = out[tag] = _ViewRows(visibility.uses_created(source), {}, synced)
        for i, key in enumerate(key_rule.encode(k) for k in rows.select(list(step.keys.key_names)).iter_rows()):
            if key not in wanted:
                continue
            entry = found.by_key.get(key)
            if entry is None:
                entry = found.by_key[key] = ([], [], {name: [] for name in dtypes})
            entry[0].append(events[i])
            entry[1].append(created[i])
            for name, values in entry[2].items():
                values.append(columns[name][i])
    return out


def _tag(step: Lookup | WindowRead) -> str:
    return ("L:" if isinstance(step, Lookup) else "W:") + step.view


def _rows_of(histories: Mapping[str, _ViewRows], tag: str, key: bytes, own: str | None) -> SourceRows:
    view = histories[tag]
    events, created, columns = view.by_key.get(key, ([], [], {}))
    return SourceRows(tag[2:], events, created, view.uses_created, None if own is None else columns.get(own, []),
                      view.synced.get(key))


def _python(series: pl.Series, dtype: DType) -> Sequence[object]:
    """A scanned column as the Python values a query gives."""
    if series.dtype.is_integer() and dtype.name in ("Timestamp", "Date"):
        convert = from_storage(dtype)
        return [convert(v) for v in series.to_list()]
    return series.to_list()
