"""``parity skew``: replay logged online requests through the offline engine and measure the skew.

A sample of the served-value log (``monitor.feature_log``) is grouped by what each request asked
(its features and their versions when served, in any order); each group becomes one spine — the
logged entity keys at the logged request times — and one ``Project.training_set`` with statuses,
which is what training on those requests would have seen. ``monitor.skew`` compares value by value.
For the values that differ, the rows of each source in the feature's lineage are read for those
entity keys — one scan per source for the whole replay, filtered to the keys in Polars, without a
visibility bound (rows created after serving are evidence) — to name the likely cause. Through a
relationship, the rows are those of the key it led to at the request time, as the offline engine
resolves it (``_resolve_paths``: a training set of the relationship's key columns over the
mismatched rows), and the relationship's own view is in the lineage.

A logged row that cannot be replayed as it was served — its entity lacks a key the definitions now
have, or holds a key of another type — is counted as not replayable, never a reason to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson
import polars as pl
import pyarrow as pa

from parity.connectors.feature_log_parquet import cell, served_in
from parity.define.dtypes import DType
from parity.define.sources import StreamSource
from parity.errors import DataError, ParityError
from parity.monitor.skew import NOT_COMPARED, Mismatch, Served, SkewReport, SourceRows, diagnose, differs
from parity.plan.nodes import Compute, Keys, Lookup, Plan, Step, WindowRead
from parity.ports.source import view_scan, window_scan
from parity.runtime.project import STATUS_SUFFIX, Project
from parity.semantics import keys as key_rule
from parity.semantics import ordering, visibility
from parity.semantics.values import arrow_type, storage_polars_type
from parity.semantics.wire import from_json

_TIME = "_parity_request_time"  # the replay spine's time column (no entity key is named so)


@dataclass
class _Pending:
    served: Served
    offline: object
    offline_status: str | None
    # per path (root, hops) its keys in canonical storage form: the root's as logged; a
    # relationship's as the offline engine resolved them at the request time (None: no parent)
    keys: dict[tuple[str, tuple[str, ...]], tuple[object, ...] | None]
    lineage: list[tuple[Lookup | WindowRead, str | None]]
    version: str | None  # the feature's version now


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
    frame = served_in(frame, since_us, until_us)
    if sample is not None and frame.height > sample:
        frame = frame.sample(n=sample, seed=seed)
    frame = frame.sort("served_at_us", "request_id", "row")
    report = SkewReport(rows=frame.height, requests=frame["request_id"].n_unique() if frame.height else 0)
    canonical: dict[str, str] = {}  # a request's features in any order are one group
    for text in frame["versions"].unique().to_list():
        canonical[text] = orjson.dumps(cell(text, "versions"), option=orjson.OPT_SORT_KEYS).decode()
    frame = frame.with_columns(pl.col("versions").replace_strict(canonical).alias("_group"))
    pending: list[_Pending] = []
    for (group_text,), group in frame.group_by("_group", maintain_order=True):
        pending.extend(_replay_group(project, str(group_text), group, report, progress))
    if pending:
        _diagnose(project, pending, report, examples)
    report.seconds = time.perf_counter() - started
    return report


def _replay_group(project: Project, group_text: str, group: pl.DataFrame, report: SkewReport,
                  progress: Callable[[str], None]) -> list[_Pending]:
    catalog = project.catalog
    logged_versions = cell(group_text, "versions")
    known, dtypes = [], {}
    for ref in logged_versions:
        try:
            dtypes[ref] = catalog.feature_at(catalog.parse(ref)).dtype
            known.append(ref)
        except ParityError:
            report.undefined[ref] += group.height
    if not known:
        return []
    plan = project.plan(known)
    roots = {root: {k: catalog.entities[root].keys[k] for k in names} for root, names in plan.roots}
    entities, storage_keys, rows = [], [], []
    for i, text in enumerate(group["entity"]):
        entity = cell(text, "entity")
        keys = _storage_keys(entity, roots)
        if keys is None:
            report.unreplayable += 1
            continue
        entities.append(entity)
        storage_keys.append(keys)
        rows.append(i)
    if not rows:
        return []
    group = group[rows]
    key_types = {k: d for keys in roots.values() for k, d in keys.items()}
    spine = _spine(entities, key_types, group["request_time_us"].to_list())
    progress(f"replaying {group.height:,} logged rows of {', '.join(known)}")
    table = project.training_set(spine, known, timestamp_column=_TIME, with_status=True, record_baseline=False)
    values = [cell(text, "values") for text in group["values"]]
    statuses = [None if text is None else cell(text, "statuses") for text in group["statuses"]]
    ids, times, served_at = group["request_id"].to_list(), group["request_time_us"].to_list(), group["served_at_us"].to_list()
    current = project.feature_versions(plan)
    outputs = dict(plan.outputs)
    pending = []
    for ref in known:
        feature = report.feature(ref)
        wire = repr(dtypes[ref])
        offline, offline_status = table.column(ref).to_pylist(), table.column(ref + STATUS_SUFFIX).to_pylist()
        logged_version = logged_versions.get(ref)
        version = None if logged_version is None else str(logged_version)
        lineage: list[tuple[Lookup | WindowRead, str | None]] | None = None
        for i in range(group.height):
            logged = statuses[i]
            status = None if logged is None else logged.get(ref)
            if status == NOT_COMPARED:
                feature.not_compared += 1
                continue
            feature.compared += 1
            value = from_json(values[i].get(ref), wire)
            if differs(value, status if isinstance(status, str) else None, offline[i], offline_status[i]):
                if lineage is None:
                    lineage = _lineage(plan, outputs[ref])
                served = Served(ref, ids[i], entities[i], times[i], served_at[i], value,
                                status if isinstance(status, str) else None, version)
                pending.append(_Pending(served, offline[i], offline_status[i],
                                        {(root, ()): key for root, key in storage_keys[i].items()}, lineage,
                                        current.get(ref)))
    return pending


def _spine(entities: Sequence[Mapping[str, object]], key_types: Mapping[str, DType], times_us: Sequence[int]) -> pa.Table:
    """A replay spine: the logged entities' keys (as logged, read by their dtypes) at the logged
    request times."""
    return pa.table({**{k: pa.array([from_json(e[k], repr(d)) for e in entities], arrow_type(d))
                        for k, d in key_types.items()},
                     _TIME: pa.array(times_us, pa.timestamp("us", tz="UTC"))})


def _storage_keys(entity: Mapping[str, object], roots: Mapping[str, Mapping[str, DType]]
                  ) -> dict[str, tuple[object, ...]] | None:
    """The logged entity's keys per root, checked and canonical; None when it cannot be replayed
    (a key missing, or of another type than the definitions now say)."""
    out = {}
    for root, keys in roots.items():
        found = []
        for name, dtype in keys.items():
            if entity.get(name) is None:
                return None
            try:
                found.append(key_rule.request_key(dtype, from_json(entity[name], repr(dtype)), name))
            except ParityError:
                return None
        out[root] = tuple(found)
    return out


def _lineage(plan: Plan, column_id: str) -> list[tuple[Lookup | WindowRead, str | None]]:
    """The views a column is computed from, on a root's own keys: (step, the column's own feature
    in that view when the column is read straight from it)."""
    producer: dict[str, Step] = {}
    for made in plan.steps:
        if isinstance(made, Compute):
            producer.update({cid: made for _, cid, _ in made.outputs})
        else:
            producer.update({o.column_id: made for o in made.outputs})
    found: list[tuple[Lookup | WindowRead, str | None]] = []
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
        else:
            # through a relationship, the parent's key is a column too: its views are lineage
            todo.extend(c for c in step.keys.columns if _computed(c))
            own = next((o.feature for o in step.outputs if o.column_id == cid), None) \
                if isinstance(step, Lookup) and cid == column_id else None
            if all(s.view != step.view or s.keys.hops != step.keys.hops or type(s) is not type(step) or o != own
                   for s, o in found):
                found.append((step, own))
    return found


def _computed(column: str) -> bool:
    """Whether a relationship's key column is a column the plan computes (a column id such as
    ``order.user_id``, which is also the feature's reference) rather than a root key name."""
    return "." in column


def _resolve_paths(project: Project, pending: list[_Pending]) -> None:
    """The keys each relationship in a mismatch's lineage led to at its request time, as the
    offline engine resolves them (one training set per root over the mismatched rows only)."""
    catalog = project.catalog
    by_root: dict[str, tuple[dict[tuple[str, ...], Keys], list[_Pending]]] = {}
    for p in pending:
        for step, _ in p.lineage:
            if step.keys.hops:
                paths, rows = by_root.setdefault(step.keys.root, ({}, []))
                paths[step.keys.hops] = step.keys
                if not rows or rows[-1] is not p:
                    rows.append(p)
    for root, (paths, rows) in by_root.items():
        key_types = catalog.entities[root].keys
        refs = sorted({c for keys in paths.values() for c in keys.columns if _computed(c)})
        spine = _spine([p.served.entity for p in rows], key_types, [p.served.request_time_us for p in rows])
        table = project.training_set(spine, refs, timestamp_column=_TIME, record_baseline=False) if refs else spine
        columns = {c: table.column(c).to_pylist() for c in refs}
        for i, p in enumerate(rows):
            root_keys = p.keys[(root, ())]
            assert root_keys is not None
            for hops, keys in sorted(paths.items(), key=lambda item: len(item[0])):
                entity = catalog.entities[keys.entity]
                found: list[object] = []
                for name, column in zip(keys.key_names, keys.columns):
                    if not _computed(column):  # a root key: already in canonical storage form
                        found.append(root_keys[list(key_types).index(column)])
                        continue
                    value = columns[column][i]
                    if value is None:
                        break
                    found.append(key_rule.request_key(entity.keys[name], value, name))
                p.keys[(root, hops)] = tuple(found) if len(found) == len(keys.key_names) else None


@dataclass
class _ViewRows:
    """One lineage view's rows of the wanted keys: per key, (event times, created times, columns)."""

    uses_created: bool
    by_key: dict[bytes, tuple[list[int], list[int | None], dict[str, list[object]]]]
    synced: dict[bytes, int | None] | None  # when the online store last held each key current; None: untracked


def _diagnose(project: Project, pending: list[_Pending], report: SkewReport, examples: int) -> None:
    _resolve_paths(project, pending)
    wanted: dict[str, tuple[Lookup | WindowRead, set[str], dict[bytes, tuple[object, ...]]]] = {}
    for p in pending:
        for step, own in p.lineage:
            entry = wanted.setdefault(_tag(step), (step, set(), {}))
            if own is not None:
                entry[1].add(own)
            key = p.keys[(step.keys.root, step.keys.hops)]
            if key is not None:
                entry[2][key_rule.encode(key)] = key
    histories = {tag: _history(project, step, columns, keys) for tag, (step, columns, keys) in wanted.items()}
    for p in pending:
        sources = [_rows_of(histories[_tag(step)], step.view, _encoded(p.keys[(step.keys.root, step.keys.hops)]), own)
                   for step, own in p.lineage]
        cause, detail = diagnose(p.served, p.version, sources)
        feature = report.feature(p.served.feature)
        feature.mismatches += 1
        feature.causes[cause] += 1
        if len(feature.examples) < examples:
            feature.examples.append(Mismatch(p.served, p.offline, p.offline_status, cause, detail))


def _history(project: Project, step: Lookup | WindowRead, columns: set[str],
             wanted: Mapping[bytes, tuple[object, ...]]) -> _ViewRows:
    """One view's rows for the ``wanted`` keys, in the row order."""
    catalog = project.catalog
    if isinstance(step, Lookup):
        view = catalog.views[step.view]
        source, key_types = view.source, view.entity.keys
        rows = project.reader(source).scan(view_scan(view, sorted(columns))).rows
    else:
        window = catalog.window_views[step.view]
        source, key_types = window.source, window.entity.keys
        rows = project.reader(source).scan(window_scan(window, [])).rows
    names = list(key_types)
    # keys as every store keys them (Polars types read by the scan → storage form, canonical)
    rows = rows.with_columns([key_rule.canonical_expr(d, pl.col(k).cast(storage_polars_type(d))).alias(k)
                              for k, d in key_types.items()])
    keys_frame = pl.DataFrame([list(col) for col in zip(*wanted.values())], schema={
        k: rows.schema[k] for k in names}, orient="col") if wanted else rows.select(names).clear()
    rows = rows.join(keys_frame, on=names, how="semi", nulls_equal=False).sort(ordering.row_order(rows.columns))
    found = _ViewRows(visibility.uses_created(source), {}, None)
    events, created = rows[ordering.EVENT].to_list(), rows[ordering.CREATED].to_list()
    values = {name: rows[name].to_list() for name in columns}
    for i, key in enumerate(key_rule.encode(k) for k in rows.select(names).iter_rows()):
        entry = found.by_key.get(key)
        if entry is None:
            entry = found.by_key[key] = ([], [], {name: [] for name in columns})
        entry[0].append(events[i])
        entry[1].append(created[i])
        for name, column in entry[2].items():
            column.append(values[name][i])
    store, table = project.online_store(), project.table_of[step.view]
    if isinstance(step, Lookup):
        encoded = list(wanted)
        found.synced = dict(zip(encoded, store.read_synced(table, [wanted[k] for k in encoded])))
    elif not isinstance(source, StreamSource):  # an index rebuilt by materialize holds its events through a time
        mark = store.get_watermark(table)
        found.synced = None if mark is None else dict.fromkeys(wanted, mark)
    return found


def _tag(step: Lookup | WindowRead) -> str:
    return ("view " if isinstance(step, Lookup) else "window view ") + step.view


def _encoded(key: tuple[object, ...] | None) -> bytes | None:
    return None if key is None else key_rule.encode(key)


def _rows_of(view: _ViewRows, name: str, key: bytes | None, own: str | None) -> SourceRows:
    """The view's rows of one key (None: a relationship with no parent at the request time: none)."""
    events, created, columns = view.by_key.get(key, ([], [], {})) if key is not None else ([], [], {})
    tracked = view.synced is not None
    return SourceRows(name, events, created, view.uses_created, None if own is None else columns.get(own, []),
                      view.synced.get(key) if view.synced is not None and key is not None else None, tracked)
