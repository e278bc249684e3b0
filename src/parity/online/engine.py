"""Execute a ``Plan`` for a batch of entities at request time.

Same plan as the offline engine; the same rules: ``semantics.max_age`` decides expiry against the
request time, ``semantics.values`` turns stored values into what resolvers see, and resolvers are
called with now = the request time. Steps that do not depend on each other run concurrently, so a
query takes as long as its slowest dependency, not the sum.

Feature views with ``max_staleness`` are resolved at request time from sources that answer point
lookups when the stored value is not fresh enough; the answer is written back (monotonically).
A source or resolver that fails or times out yields, for the features depending on it, the declared
default or null with status "error"; the rest of the answer still comes back. An ``observer`` is
told what each step cost (the server's per-resolver and per-source metrics).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal, TypeVar

from parity.define.dtypes import DType
from parity.define.features import Feature, FeatureView
from parity.define.resolvers import CallPolicy, CircuitBreaker
from parity.define.sources import Source
from parity.errors import EntityKeyError, StoreError
from parity.online.result import FeatureValue, QueryResult
from parity.online.windows import window_outputs
from parity.plan.catalog import Catalog
from parity.plan.nodes import Compute, Lookup, Plan, Step, WindowRead
from parity.ports.online_store import OnlineStore, StoredRow
from parity.ports.source import ScanRequest, view_scan
from parity.semantics import calls, values, visibility
from parity.semantics import keys as pkeys
from parity.semantics.calls import Guard
from parity.semantics.max_age import expired_micros
from parity.semantics.time import from_micros, timedelta_micros

T = TypeVar("T")
# What each step of a query cost, for metrics: kind ("lookup", "window", "resolver", or "source" for
# a request-time read of a view's source), its name, seconds, keys asked, keys that failed.
StepObserver = Callable[[str, str, float, int, int], None]
# True: a FeatureValue per value (``details``); "statuses": only each value's status (``statuses``).
WithStatus = bool | Literal["statuses"]
Entities = Mapping[str, Sequence[object]] | Sequence[Mapping[str, object]]
# Request-time lookups fail fast for a while after repeated failures, so a dead database costs
# one timeout per few seconds instead of one per request.
SOURCE_BREAKER = CircuitBreaker(failures=3, reset_after=5.0)
PLAN_CACHE = 4096
MAX_KEY_NAMES = 64  # compiled plans kept (a service asks for a few; a hostile client for many)


class _Compiled:
    """Per-plan facts the hot path needs, computed once."""

    def __init__(self, catalog: Catalog, plan: Plan, table_of: Mapping[str, str], request_time: set[str]) -> None:
        self.plan = plan
        self.dtypes: dict[str, DType] = {}
        self.defaults: dict[str, object] = {}
        self.root_keys = [(root, [(k, catalog.entities[root].keys[k]) for k in keys]) for root, keys in plan.roots]
        self.lookups: dict[int, tuple[str, bool, list[tuple[str, int, int | None]]]] = {}
        # Lookups through a relationship keyed by a Float64: their keys are stored feature values,
        # which -0.0 or NaN reach in any form (request keys arrive canonical, ``semantics.keys``).
        self.float_keys: dict[int, list[DType]] = {}
        self.has_async = False
        self.windows: dict[int, str] = {}  # step -> window index table
        for i, step in enumerate(plan.steps):
            if isinstance(step, Lookup):
                view = catalog.views[step.view]
                names = [f.name for f in view.features]
                outs = []
                for out in step.outputs:
                    limit = None if out.max_age is None else timedelta_micros(out.max_age)
                    outs.append((out.column_id, names.index(out.feature), limit))
                    self.dtypes[out.column_id] = out.dtype
                    self.defaults[out.column_id] = _stored_default(view.features[names.index(out.feature)], out.dtype)
                self.lookups[i] = (table_of[step.view], visibility.uses_created(view.source), outs)
                if step.keys.hops and any(d.name == "Float64" for d in view.entity.keys.values()):
                    self.float_keys[i] = list(view.entity.keys.values())
                self.has_async |= step.view in request_time
            elif isinstance(step, WindowRead):
                for wout in step.outputs:
                    self.dtypes[wout.column_id] = wout.dtype
                    self.defaults[wout.column_id] = None
                self.windows[i] = table_of[step.view]
                wview = catalog.window_views[step.view]
                if step.keys.hops and any(d.name == "Float64" for d in wview.entity.keys.values()):
                    self.float_keys[i] = list(wview.entity.keys.values())
            else:
                res = catalog.resolvers[step.resolver]
                self.has_async |= res.is_async
                for (_, cid, dtype), feature in zip(step.outputs, res.outputs):
                    self.dtypes[cid] = dtype
                    self.defaults[cid] = _stored_default(feature, dtype)
        self.outputs = [(ref, cid, values.from_storage(self.dtypes[cid])) for ref, cid in plan.outputs]
        self.converters = {cid: values.from_storage(d) for cid, d in self.dtypes.items()}
        self.levels = _levels(plan.steps)


def _stored_default(feature: Feature, dtype: DType) -> object:
    return values.to_storage(dtype, feature.default, where=f"the default of feature {feature.name!r}")


def _levels(steps: Sequence[Step]) -> list[list[int]]:
    """Group steps so each group depends only on earlier groups (they may run concurrently)."""
    produced_at: dict[str, int] = {}
    level_of: list[int] = []
    for step in steps:
        reads = list(step.keys.columns) + ([c for _, c in step.inputs] if isinstance(step, Compute) else [])
        level = 1 + max((produced_at.get(c, -1) for c in reads), default=-1)
        level_of.append(level)
        outs = ([o.column_id for o in step.outputs] if isinstance(step, Lookup | WindowRead)
                else [c for _, c, _ in step.outputs])
        for cid in outs:
            produced_at[cid] = level
    levels: list[list[int]] = [[] for _ in range(max(level_of, default=-1) + 1)]
    for i, level in enumerate(level_of):
        levels[level].append(i)
    return levels


def key_columns(entities: Entities) -> tuple[int, dict[str, list[object]]]:
    """The request's key columns. A mapping of lists is columns; a mapping of single values is one
    entity (``{"txn_id": "t1"}`` is one key, not the characters of a string); a list is rows."""
    if isinstance(entities, Mapping):
        listed = {k: isinstance(v, list | tuple) for k, v in entities.items()}
        if listed and not any(listed.values()):
            return 1, {k: [v] for k, v in entities.items()}
        if not all(listed.values()):
            scalars = sorted(k for k, is_list in listed.items() if not is_list)
            raise EntityKeyError(f"entity keys {scalars} are single values while others are lists; give every key "
                                 f"as a list (one value per entity) or every key as one value")
        columns = {k: list(v) for k, v in entities.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise EntityKeyError(f"entity key columns have different lengths: { {k: len(v) for k, v in columns.items()} }")
        return (lengths.pop() if lengths else 0), columns
    if isinstance(entities, str | bytes) or not isinstance(entities, Sequence):
        raise EntityKeyError(f"entities must be a mapping of key columns or a list of key rows, not "
                             f"{type(entities).__name__}")
    for i, row in enumerate(entities):
        if not isinstance(row, Mapping):
            raise EntityKeyError(f"entity {i} is a {type(row).__name__}; give each entity as a mapping of its keys")
    names = {k for row in entities for k in row}
    if len(names) > MAX_KEY_NAMES:  # a column is built per name: bounded, not one per junk key a request sends
        raise EntityKeyError(f"the entity rows name {len(names):,} different keys; a request's entities may name at "
                             f"most {MAX_KEY_NAMES} (the keys of the features' entities)")
    return len(entities), {k: [row.get(k) for row in entities] for k in names}


def _key_rows(compiled: _Compiled, n: int, columns: dict[str, list[object]]) -> dict[str, list[object]]:
    """Validate request keys (``semantics.keys``) and return them as canonical storage-form columns."""
    out: dict[str, list[object]] = {}
    for root, keys in compiled.root_keys:
        for key, dtype in keys:
            if key not in columns:
                raise EntityKeyError(
                    f"features of {root!r} need its key {key!r}, which the request does not give "
                    f"(it gives {sorted(columns)})"
                )
            out[key] = [pkeys.request_key(dtype, v, f"key {key!r} of entity {i}") for i, v in enumerate(columns[key])]
    return out


class _State:
    """Columns (storage form), statuses, event times and errors of one request."""

    __slots__ = ("aread", "cols", "errors", "events", "n", "now_us", "status")

    def __init__(self, n: int, cols: dict[str, list[object]], now_us: int, aread: bool = False) -> None:
        self.aread = aread  # lookups await the store's aread (on the caller's event loop)
        self.n = n
        self.cols = cols
        self.now_us = now_us
        self.status: dict[str, list[str]] = {}
        self.events: dict[str, list[int | None]] = {}
        self.errors: dict[str, list[str | None]] = {}


class OnlineEngine:
    def __init__(
        self,
        catalog: Catalog,
        store: OnlineStore,
        table_of: Mapping[str, str],
        reader_for: Callable[[Source], Any] | None = None,
        http_client: Callable[[], object] | None = None,
        observer: StepObserver | None = None,
    ) -> None:
        self.catalog = catalog
        self.observer = observer
        self.store = store
        self.table_of = table_of
        self.reader_for = reader_for
        self.http_client = http_client
        self._compiled: dict[int, _Compiled] = {}  # by plan identity (each holds its plan, so the id stays its own)
        self.request_time = {
            name for name, view in catalog.views.items() if view.max_staleness is not None and reader_for is not None
        }
        self.guards: dict[str, Guard] = {}
        self._requests: dict[str, ScanRequest] = {}
        self._reads_may_block = bool(getattr(store, "reads_may_block", True))
        self._aread: Callable[..., Awaitable[list[StoredRow | None]]] | None = getattr(store, "aread", None)
        for name, res in catalog.resolvers.items():
            self.guards[f"resolver:{name}"] = Guard(f"resolver {name!r}", res.policy)
        for name in self.request_time:
            view = catalog.views[name]
            self.guards[f"view:{name}"] = Guard(
                f"source {view.source.name!r} (feature view {name!r})",
                CallPolicy(timeout=view.timeout, circuit_breaker=SOURCE_BREAKER),
            )

    def compile(self, plan: Plan) -> _Compiled:
        compiled = self._compiled.get(id(plan))
        if compiled is None or compiled.plan is not plan:
            if len(self._compiled) >= PLAN_CACHE:  # requests can spell plans without end: the oldest go
                del self._compiled[next(iter(self._compiled))]
            compiled = self._compiled[id(plan)] = _Compiled(self.catalog, plan, self.table_of, self.request_time)
        return compiled

    def needs_event_loop(self, plan: Plan) -> bool:
        return self.compile(plan).has_async

    def execute(self, plan: Plan, entities: Entities, now_us: int, with_status: WithStatus = False) -> QueryResult:
        """Run a plan that needs no event loop (no async resolver, no request-time lookup)."""
        compiled = self.compile(plan)
        if compiled.has_async:
            raise RuntimeError("this plan awaits I/O; run aexecute on an event loop")
        return _drive_sync(self._run(compiled, entities, now_us, with_status))

    async def aexecute(self, plan: Plan, entities: Entities, now_us: int,
                       with_status: WithStatus = False) -> QueryResult:
        return await self._run(self.compile(plan), entities, now_us, with_status)

    def awaits_reads(self, plan: Plan) -> bool:
        """Whether a plan that needs no loop of its own (``needs_event_loop`` False) should still
        run on the caller's loop: its store reads can be awaited (``OnlineStore.aread``) instead of
        blocking the loop for a round trip."""
        return self._aread is not None and bool(self.compile(plan).lookups)

    async def aexecute_reads(self, plan: Plan, entities: Entities, now_us: int,
                             with_status: WithStatus = False) -> QueryResult:
        """Run a plan that needs no loop of its own on the caller's, awaiting its store reads."""
        return await self._run(self.compile(plan), entities, now_us, with_status, aread=True)

    async def _run(self, compiled: _Compiled, entities: Entities, now_us: int, with_status: WithStatus,
                   aread: bool = False) -> QueryResult:
        n, given = key_columns(entities)
        if n == 0:  # asked for nothing: nothing to answer
            return QueryResult(tuple(ref for ref, _, _ in compiled.outputs), [], [] if with_status is True else None,
                               [] if with_status == "statuses" else None)
        cols = _key_rows(compiled, n, given)
        state = _State(n, cols, now_us, aread)
        steps = compiled.plan.steps
        for level in compiled.levels:
            if compiled.has_async and len(level) > 1:
                await asyncio.gather(*(self._step(compiled, i, steps[i], state) for i in level))
            else:
                for i in level:
                    await self._step(compiled, i, steps[i], state)
        rows = [{ref: convert(cols[cid][r]) for ref, cid, convert in compiled.outputs} for r in range(n)]
        if with_status == "statuses":  # the statuses alone, as texts (the feature log's; no objects, no times)
            statuses = [{ref: state.status[cid][r] for ref, cid, _ in compiled.outputs} for r in range(n)]
            return QueryResult(tuple(ref for ref, _, _ in compiled.outputs), rows, None, statuses)
        details = None
        if with_status:
            details = [
                {
                    ref: FeatureValue(
                        rows[r][ref],
                        state.status[cid][r],  # type: ignore[arg-type]
                        None if cid not in state.events or state.events[cid][r] is None
                        else from_micros(state.events[cid][r]),  # type: ignore[arg-type]
                        state.errors[cid][r] if cid in state.errors else None,
                    )
                    for ref, cid, _ in compiled.outputs
                }
                for r in range(n)
            ]
        return QueryResult(tuple(ref for ref, _, _ in compiled.outputs), rows, details)

    async def _step(self, compiled: _Compiled, i: int, step: Step, state: _State) -> None:
        observer = self.observer
        started = time.perf_counter() if observer is not None else 0.0
        if isinstance(step, Lookup):
            kind, name = "lookup", step.view
            failed = await self._lookup(compiled, i, step, state)
        elif isinstance(step, WindowRead):
            kind, name = "window", step.view
            failed = await self._window(compiled, i, step, state)
        else:
            kind, name = "resolver", step.resolver
            failed = await self._compute(compiled, step, state)
        if observer is not None:
            observer(kind, name, time.perf_counter() - started, state.n, failed)

    async def _window(self, compiled: _Compiled, i: int, step: WindowRead, state: _State) -> int:
        """Window aggregates for every key (``online.windows``), in one trip to the store."""
        view = self.catalog.window_views[step.view]
        keys = [state.cols[c] for c in step.keys.columns]
        dtypes = compiled.float_keys.get(i)
        if dtypes is not None:  # keys that are stored feature values: -0.0 and NaN in any form
            keys = [[pkeys.canonical_value(d, v) for v in col] for col, d in zip(keys, dtypes)]
        key_tuples = list(zip(*keys)) if len(keys) > 1 else [(k,) for k in keys[0]]
        wanted = list(dict.fromkeys(k for k in key_tuples if None not in k))
        error: str | None = None
        got: dict[str, list[object]] = {}
        if wanted:
            try:
                got = await self._store_io(compiled, window_outputs, self.store, compiled.windows[i], view,
                                           step.outputs, wanted, state.now_us, may_block=self._reads_may_block)
            except StoreError as exc:
                error = str(exc)
        position = {k: j for j, k in enumerate(wanted)}
        failed = len(key_tuples) if error is not None else 0
        for out in step.outputs:
            vals: list[object] = []
            sts: list[str] = []
            for key in key_tuples:
                if error is not None or None in key:
                    vals.append(None)
                    sts.append("error" if error is not None else "missing")
                else:
                    vals.append(got[out.column_id][position[key]])
                    sts.append("present")
            state.cols[out.column_id] = vals
            state.status[out.column_id] = sts
            if error is not None:
                state.errors[out.column_id] = [error] * len(key_tuples)
        return failed

    async def _store_io(self, compiled: _Compiled, fn: Callable[..., T], *args: Any, may_block: bool = True) -> T:
        """A store call: direct when the plan never awaits (no loop to block) or the call cannot wait
        (``OnlineStore.reads_may_block``), else in a worker thread, so a slow store never stalls the
        other steps of the query."""
        if not compiled.has_async or not may_block:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def _lookup(self, compiled: _Compiled, i: int, step: Lookup, state: _State) -> int:
        table, with_created, outs = compiled.lookups[i]
        keys = [state.cols[c] for c in step.keys.columns]
        dtypes = compiled.float_keys.get(i)
        if dtypes is not None:
            keys = [[pkeys.canonical_value(d, v) for v in col] for col, d in zip(keys, dtypes)]
        key_tuples = list(zip(*keys)) if len(keys) > 1 else [(k,) for k in keys[0]]
        wanted = list(dict.fromkeys(k for k in key_tuples if None not in k))
        found: dict[tuple[object, ...], StoredRow | None] = {}
        failed: dict[tuple[object, ...], str] = {}
        request_time = step.view in self.request_time
        if wanted:
            # One trip to the store (and, off the loop, one thread hop) for the values and, for
            # request-time views, when each was last synced.
            if state.aread and not request_time:
                held, synced, problem = await self._aread_rows(table, wanted)
            else:
                held, synced, problem = await self._store_io(compiled, self._read, table, wanted, request_time,
                                                             may_block=self._reads_may_block)
            found = dict(zip(wanted, held))
            if problem is not None and not request_time:  # the store is down: these features fail
                failed = dict.fromkeys(wanted, problem)
            if request_time:
                await self._resolve_stale(compiled, step, table, wanted, synced, found, failed, state.now_us)
        now_us = state.now_us
        # Per key once: which row is served and how (statuses other than "present" hold no value).
        rows: list[StoredRow | None] = []
        base: list[str] = []
        events: list[int | None] = []
        for key in key_tuples:
            row = found.get(key)
            if key in failed:
                row, status, event = None, "error", None
            elif row is None:
                status, event = "missing", None
            elif visibility.stored_visible_at(row[0], row[1], with_created) > now_us:
                # Newer than the request time: what was visible then is not kept online.
                status, event = "future", row[0]
                row = None
            else:
                status, event = "present", row[0]
            rows.append(row)
            base.append(status)
            events.append(event)
        for cid, position, limit in outs:
            if limit is None:
                vals = [None if row is None else row[2][position] for row in rows]
                sts = base
            else:
                vals, sts = [], []
                for row, status in zip(rows, base):
                    if row is not None and expired_micros(now_us, row[0], limit):
                        vals.append(None)
                        sts.append("expired")
                    else:
                        vals.append(None if row is None else row[2][position])
                        sts.append(status)
            if failed:
                default = compiled.defaults[cid]
                vals = [default if status == "error" else v for v, status in zip(vals, sts)]
                state.errors[cid] = [failed.get(key) for key in key_tuples]
            state.cols[cid], state.status[cid], state.events[cid] = vals, sts, events
        return len(failed)

    def _read(self, table: str, keys: list[tuple[object, ...]], with_sync: bool
              ) -> tuple[list[StoredRow | None], list[int | None], str | None]:
        """Stored rows, sync marks (when asked for) and the store's error, if it failed."""
        try:
            rows = self.store.read(table, keys)
            synced = self.store.read_synced(table, keys) if with_sync else []
            return rows, synced, None
        except StoreError as exc:  # without the store, every request-time key is asked of the source
            return [None] * len(keys), [None] * len(keys), str(exc)

    async def _aread_rows(self, table: str, keys: list[tuple[object, ...]]
                          ) -> tuple[list[StoredRow | None], list[int | None], str | None]:
        """``_read`` for a store read awaited on the caller's loop (no sync marks: not request-time)."""
        assert self._aread is not None
        try:
            return await self._aread(table, keys), [], None
        except StoreError as exc:
            return [None] * len(keys), [], str(exc)

    async def _resolve_stale(
        self,
        compiled: _Compiled,
        step: Lookup,
        table: str,
        wanted: list[tuple[object, ...]],
        synced: list[int | None],
        found: dict[tuple[object, ...], StoredRow | None],
        failed: dict[tuple[object, ...], str],
        now_us: int,
    ) -> None:
        """Ask the source for keys whose stored value is not fresh enough; write the answers back."""
        view: FeatureView = self.catalog.views[step.view]
        if view.max_staleness is None or self.reader_for is None:
            return
        staleness = timedelta_micros(view.max_staleness)
        # Fresh: synced at or before the request time, less than max_staleness ago. A value synced
        # after the request time may be newer than what was visible then, so it is not served.
        stale = [k for k, s in zip(wanted, synced) if s is None or not 0 <= now_us - s < staleness]
        if not stale:
            return
        reader = self.reader_for(view.source)
        request = self._requests.get(view.name)
        if request is None:  # one request per view: the reader caches what it resolved for it
            request = self._requests[view.name] = view_scan(view)
        cause = getattr(reader, "recent_problem", None)
        started = time.perf_counter()
        try:
            fetched: dict[tuple[object, ...], StoredRow] = await self.guards[f"view:{view.name}"].call(
                lambda: reader.lookup(request, stale, now_us), cause
            )
        except Exception as exc:  # noqa: BLE001 - the failure becomes a per-feature status
            message = str(exc) if isinstance(exc, StoreError | calls.CallTimeoutError) else f"{type(exc).__name__}: {exc}"
            for key in stale:
                failed[key] = message
            if self.observer is not None:
                self.observer("source", view.source.name, time.perf_counter() - started, len(stale), len(stale))
            return
        if self.observer is not None:  # the keys asked of the source, beside the lookup's: the request-time ratio
            self.observer("source", view.source.name, time.perf_counter() - started, len(stale), 0)
        for key in stale:
            found[key] = fetched.get(key)
        try:
            await self._store_io(compiled, self._write_back, table, fetched, stale, now_us)
        except StoreError:
            pass  # the answer stands; the write-back is retried by the next request that asks

    def _write_back(self, table: str, fetched: dict[tuple[object, ...], StoredRow], keys: list[tuple[object, ...]],
                    now_us: int) -> None:
        self.store.write(table, list(fetched.items()))
        self.store.mark_synced(table, keys, now_us)

    async def _compute(self, compiled: _Compiled, step: Compute, state: _State) -> int:
        res = self.catalog.resolvers[step.resolver]
        n = state.n
        inputs = [(param, state.cols[cid], compiled.converters[cid]) for param, cid in step.inputs]
        now = from_micros(state.now_us) if step.wants_now else None
        http = self.http_client() if res.wants_http and self.http_client is not None else None
        n_out = len(step.outputs)
        outs: list[list[object]] = [[None] * n for _ in range(n_out)]
        sts = [["present"] * n for _ in range(n_out)]
        errs: list[list[str | None]] = [[None] * n for _ in range(n_out)]
        defaults = [compiled.defaults[cid] for _, cid, _ in step.outputs]
        guard = self.guards[f"resolver:{res.name}"]

        def kwargs_of(r: int) -> dict[str, Any]:
            kwargs: dict[str, Any] = {param: convert(vals[r]) for param, vals, convert in inputs}
            if now is not None:
                kwargs["now"] = now
            if res.wants_http:
                kwargs["http"] = http
            return kwargs

        def store(r: int, result: object) -> None:
            parts = calls.outputs_of(result, n_out)
            for j, (feature, _, dtype) in enumerate(step.outputs):
                outs[j][r] = values.to_storage(dtype, parts[j], where=f"resolver {res.name!r}, feature {feature!r}")

        failures = [0]

        def fail(r: int, exc: BaseException) -> None:
            failures[0] += 1
            message = calls.failure(res.name, exc)
            for j in range(n_out):
                outs[j][r], sts[j][r], errs[j][r] = defaults[j], "error", message

        if res.is_async:
            async def one(r: int) -> None:
                try:
                    store(r, await guard.call(lambda: res.fn(**kwargs_of(r))))  # type: ignore[arg-type,return-value]
                except Exception as exc:  # noqa: BLE001 - any resolver failure becomes a per-feature status
                    fail(r, exc)

            await asyncio.gather(*(one(r) for r in range(n)))
        else:
            for r in range(n):
                try:
                    store(r, res.fn(**kwargs_of(r)))
                except Exception as exc:  # noqa: BLE001 - any resolver failure becomes a per-feature status
                    fail(r, exc)
        for j, (_, cid, _) in enumerate(step.outputs):
            state.cols[cid], state.status[cid], state.errors[cid] = outs[j], sts[j], errs[j]
        return failures[0]


def _drive_sync(coro: Coroutine[Any, Any, QueryResult]) -> QueryResult:
    """Run a coroutine that never suspends (no async step in the plan) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("an online plan without async steps suspended; this is a bug in parity")
