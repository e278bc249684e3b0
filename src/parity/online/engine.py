"""Execute a ``Plan`` for a batch of entities at request time.

Same plan as the offline engine; the same rules: ``semantics.max_age`` decides expiry against the
request time, ``semantics.values`` turns stored values into what resolvers see, and resolvers are
called with now = the request time. A resolver that raises yields an "error" status for its outputs
(and nulls downstream); the rest of the answer still comes back.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from parity.define.dtypes import DType
from parity.errors import DataError, EntityKeyError
from parity.online.result import FeatureValue, QueryResult
from parity.plan.catalog import Catalog
from parity.plan.nodes import Compute, Lookup, Plan
from parity.ports.online_store import OnlineStore
from parity.semantics import values
from parity.semantics.max_age import expired_micros
from parity.semantics.time import from_micros, timedelta_micros

Entities = Mapping[str, Sequence[object]] | Sequence[Mapping[str, object]]


class _Compiled:
    """Per-plan facts the hot path needs, computed once."""

    def __init__(self, catalog: Catalog, plan: Plan, table_of: Mapping[str, str]) -> None:
        self.plan = plan
        self.has_async = any(
            isinstance(s, Compute) and catalog.resolvers[s.resolver].is_async for s in plan.steps
        )
        self.dtypes: dict[str, DType] = {}
        self.root_keys = [(root, [(k, catalog.entities[root].keys[k]) for k in keys]) for root, keys in plan.roots]
        self.lookups: dict[int, tuple[str, list[tuple[str, int, int | None]]]] = {}
        for i, step in enumerate(plan.steps):
            if isinstance(step, Lookup):
                view = catalog.views[step.view]
                names = [f.name for f in view.features]
                outs = []
                for out in step.outputs:
                    limit = None if out.max_age is None else timedelta_micros(out.max_age)
                    outs.append((out.column_id, names.index(out.feature), limit))
                    self.dtypes[out.column_id] = out.dtype
                self.lookups[i] = (table_of[step.view], outs)
            else:
                for _, cid, dtype in step.outputs:
                    self.dtypes[cid] = dtype
        self.outputs = [(ref, cid, values.from_storage(self.dtypes[cid])) for ref, cid in plan.outputs]
        self.converters = {cid: values.from_storage(d) for cid, d in self.dtypes.items()}


def _key_rows(compiled: _Compiled, entities: Entities) -> tuple[int, dict[str, list[object]]]:
    """Validate request keys and return them as storage-form columns named by key."""
    if isinstance(entities, Mapping):
        columns = {k: list(v) for k, v in entities.items()}  # type: ignore[arg-type]
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise EntityKeyError(f"entity key columns have different lengths: { {k: len(v) for k, v in columns.items()} }")
        n = lengths.pop() if lengths else 0
    else:
        n = len(entities)
        names = {k for row in entities for k in row}
        columns = {k: [row.get(k) for row in entities] for k in names}
    out: dict[str, list[object]] = {}
    for root, keys in compiled.root_keys:
        for key, dtype in keys:
            if key not in columns:
                raise EntityKeyError(
                    f"features of {root!r} need its key {key!r}, which the request does not give "
                    f"(it gives {sorted(columns)})"
                )
            col = columns[key]
            stored = []
            for i, v in enumerate(col):
                if v is None:
                    raise EntityKeyError(f"key {key!r} of row {i} is null; give a value for every entity")
                try:
                    stored.append(values.to_storage(dtype, v, where=f"key {key!r} of row {i}"))
                except DataError as exc:
                    raise EntityKeyError(str(exc).replace("returned", "is")) from None
            out[key] = stored
    return n, out


class OnlineEngine:
    def __init__(self, catalog: Catalog, store: OnlineStore, table_of: Mapping[str, str]) -> None:
        self.catalog = catalog
        self.store = store
        self.table_of = table_of
        self._compiled: dict[int, _Compiled] = {}

    def _compile(self, plan: Plan) -> _Compiled:
        compiled = self._compiled.get(id(plan))
        if compiled is None or compiled.plan is not plan:
            compiled = self._compiled[id(plan)] = _Compiled(self.catalog, plan, self.table_of)
        return compiled

    def execute(self, plan: Plan, entities: Entities, now_us: int, with_status: bool = False) -> QueryResult:
        compiled = self._compile(plan)
        coro = self._run(compiled, entities, now_us, with_status)
        if compiled.has_async:
            return asyncio.run(coro)
        return _drive_sync(coro)

    async def aexecute(self, plan: Plan, entities: Entities, now_us: int, with_status: bool = False) -> QueryResult:
        return await self._run(self._compile(plan), entities, now_us, with_status)

    async def _run(self, compiled: _Compiled, entities: Entities, now_us: int, with_status: bool) -> QueryResult:
        n, cols = _key_rows(compiled, entities)
        status: dict[str, list[str]] = {}
        events: dict[str, list[int | None]] = {}
        errors: dict[str, list[str | None]] = {}
        for i, step in enumerate(compiled.plan.steps):
            keys = [cols[c] for c in step.keys.columns]
            key_tuples = list(zip(*keys)) if len(keys) > 1 else [(k,) for k in keys[0]]
            if isinstance(step, Lookup):
                table, outs = compiled.lookups[i]
                wanted = [k for k in key_tuples if None not in k]
                found = dict(zip(wanted, self.store.read(table, wanted))) if wanted else {}
                for cid, position, limit in outs:
                    vals: list[object] = []
                    sts: list[str] = []
                    evs: list[int | None] = []
                    for key in key_tuples:
                        row = found.get(key)
                        if row is None:
                            vals.append(None), sts.append("missing"), evs.append(None)
                        elif expired_micros(now_us, row[0], limit):
                            vals.append(None), sts.append("expired"), evs.append(row[0])
                        else:
                            vals.append(row[2][position]), sts.append("present"), evs.append(row[0])
                    cols[cid], status[cid], events[cid] = vals, sts, evs
            else:
                await self._compute(compiled, step, cols, status, errors, n, now_us)
        rows = [{ref: convert(cols[cid][r]) for ref, cid, convert in compiled.outputs} for r in range(n)]
        details = None
        if with_status:
            details = [
                {
                    ref: FeatureValue(
                        rows[r][ref],
                        status[cid][r],  # type: ignore[arg-type]
                        None if events.get(cid) is None or events[cid][r] is None else from_micros(events[cid][r]),  # type: ignore[arg-type]
                        errors.get(cid, [None] * n)[r],
                    )
                    for ref, cid, _ in compiled.outputs
                }
                for r in range(n)
            ]
        return QueryResult(tuple(ref for ref, _, _ in compiled.outputs), rows, details)

    async def _compute(
        self,
        compiled: _Compiled,
        step: Compute,
        cols: dict[str, list[object]],
        status: dict[str, list[str]],
        errors: dict[str, list[str | None]],
        n: int,
        now_us: int,
    ) -> None:
        res = self.catalog.resolvers[step.resolver]
        inputs = [(param, cols[cid], compiled.converters[cid]) for param, cid in step.inputs]
        now = from_micros(now_us) if step.wants_now else None
        outs = [[None] * n for _ in step.outputs]
        sts = [["present"] * n for _ in step.outputs]
        errs: list[list[str | None]] = [[None] * n for _ in step.outputs]
        single = len(step.outputs) == 1
        for r in range(n):
            kwargs: dict[str, Any] = {param: convert(vals[r]) for param, vals, convert in inputs}
            if now is not None:
                kwargs["now"] = now
            try:
                result = res.fn(**kwargs)
                if inspect.isawaitable(result):
                    result = await result
                parts = (result,) if single else _split(result, len(step.outputs))
                for j, (feature, _, dtype) in enumerate(step.outputs):
                    outs[j][r] = values.to_storage(dtype, parts[j], where=f"resolver {res.name!r}, feature {feature!r}")
            except Exception as exc:  # noqa: BLE001 - any resolver failure becomes a per-feature status
                message = f"resolver {res.name!r} raised {type(exc).__name__}: {exc}"
                for j in range(len(step.outputs)):
                    outs[j][r], sts[j][r], errs[j][r] = None, "error", message
        for j, (_, cid, _) in enumerate(step.outputs):
            cols[cid], status[cid], errors[cid] = outs[j], sts[j], errs[j]


def _split(result: object, n: int) -> tuple[object, ...]:
    if result is None:
        return (None,) * n
    if not isinstance(result, tuple) or len(result) != n:
        raise DataError(f"returned {result!r}; it declares {n} outputs, so return a {n}-tuple")
    return result


def _drive_sync(coro: Coroutine[Any, Any, QueryResult]) -> QueryResult:
    """Run a coroutine that never suspends (no async resolver in the plan) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("an online plan without async resolvers suspended; this is a bug in parity")
