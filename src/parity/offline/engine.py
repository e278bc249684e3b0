"""Execute a ``Plan`` over a spine: one output row per spine row, in spine order.

Source-backed lookups run the as-of rule (``semantics.asof``) vectorized; ``max_age`` comes from
``semantics.max_age``; Python resolvers are called once per row with now = the row's time and the
same Python values the online engine would give them (``semantics.values``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import polars as pl

from parity.define.dtypes import DType
from parity.define.sources import Source
from parity.errors import DataError
from parity.plan.catalog import Catalog
from parity.plan.nodes import Compute, Keys, Lookup, Plan
from parity.ports.source import ScanRequest, SourceReader
from parity.semantics import asof, max_age, values
from parity.semantics.ordering import EVENT
from parity.semantics.time import from_micros

Progress = Callable[[str], None]


def _no_progress(message: str) -> None:
    return None


class OfflineEngine:
    def __init__(
        self,
        catalog: Catalog,
        reader_for: Callable[[Source], SourceReader],
        progress: Progress = _no_progress,
        http_client: Callable[[], object] | None = None,
    ) -> None:
        self.catalog = catalog
        self.reader_for = reader_for
        self.progress = progress
        self.http_client = http_client

    def _prepared_views(self, plan: Plan, until_us: int | None) -> dict[str, asof.Prepared]:
        """Read every feature view the plan looks up once, with the union of the features it needs.

        Rows that become visible after the latest spine time can never be chosen: the scan leaves
        them out (pushed down to the database for SQL sources).
        """
        needed: dict[str, dict[str, tuple[str, DType]]] = {}
        for step in plan.steps:
            if isinstance(step, Lookup):
                cols = needed.setdefault(step.view, {})
                for out in step.outputs:
                    cols[out.feature] = (out.column, out.dtype)
        prepared = {}
        for name, cols in needed.items():
            view = self.catalog.views[name]
            request = ScanRequest(
                columns={**{k: (view.source_key(k), d) for k, d in view.entity.keys.items()}, **cols},
                visible_until_us=until_us,
                where=f"feature view {name!r}",
            )
            reader = self.reader_for(view.source)
            rows = reader.scan(request)
            self.progress(f"read {rows.height:,} rows of {name} from {reader.describe()}")
            prepared[name] = asof.prepare(rows, list(view.entity.keys), uses_created=asof.uses_created(view.source))
        return prepared

    def run(self, plan: Plan, spine_keys: pl.DataFrame, times_us: pl.Series) -> dict[str, pl.Series]:
        """Values of every column the plan computes, aligned with the spine.

        ``spine_keys`` holds each root entity's key columns (already cast to the key dtypes);
        ``times_us`` is each row's time in UTC µs.
        """
        prepared = self._prepared_views(plan, times_us.max() if len(times_us) else None)  # type: ignore[arg-type]
        columns: dict[str, pl.Series] = {c: spine_keys[c] for c in spine_keys.columns}
        dtypes: dict[str, DType] = {}
        for i, step in enumerate(plan.steps, 1):
            probes = self._probes(step.keys, columns, times_us)
            if isinstance(step, Lookup):
                frame = prepared[step.view]
                chosen = asof.choose(frame, probes, step.keys.key_names)
                got = asof.gather(frame, chosen, [EVENT, *(o.feature for o in step.outputs)])
                got = got.with_columns(times_us.alias(asof.PROBE_TIME))
                for out in step.outputs:
                    expired = max_age.expired_expr(pl.col(asof.PROBE_TIME), pl.col(EVENT), out.max_age)
                    value = pl.when(expired).then(None).otherwise(pl.col(out.feature))
                    columns[out.column_id] = got.select(value.alias(out.column_id)).to_series()
                    dtypes[out.column_id] = out.dtype
                self.progress(f"step {i}/{len(plan.steps)}: looked up {step.view} for {len(probes):,} rows")
            else:
                self._compute(step, columns, dtypes, times_us, probes)
                self.progress(f"step {i}/{len(plan.steps)}: ran resolver {step.resolver} on {len(probes):,} rows")
        return columns

    @staticmethod
    def _probes(keys: Keys, columns: dict[str, pl.Series], times_us: pl.Series) -> pl.DataFrame:
        data = {name: columns[col] for name, col in zip(keys.key_names, keys.columns)}
        return pl.DataFrame(data).with_columns(times_us.alias(asof.PROBE_TIME))

    def _compute(
        self,
        step: Compute,
        columns: dict[str, pl.Series],
        dtypes: dict[str, DType],
        times_us: pl.Series,
        probes: pl.DataFrame,
    ) -> None:
        res = self.catalog.resolvers[step.resolver]
        n = len(times_us)
        args: list[tuple[str, list[object]]] = []
        for param, cid in step.inputs:
            dtype = dtypes[cid]
            convert = values.from_storage(dtype)
            stored = columns[cid].cast(values.storage_polars_type(dtype)).to_list()
            args.append((param, [convert(v) for v in stored]))
        nows = [from_micros(t) for t in times_us.to_list()] if step.wants_now else None

        def call_kwargs(row: int) -> dict[str, object]:
            kwargs = {param: vals[row] for param, vals in args}
            if nows is not None:
                kwargs["now"] = nows[row]
            return kwargs

        def where(row: int) -> str:
            key = {k: probes[k][row] for k in step.keys.key_names}
            return f"resolver {res.name!r} (defined at {res.location}), spine row {row}, key {key}"

        if res.is_async:
            results = asyncio.run(
                _gather_async(res.fn, [call_kwargs(r) for r in range(n)], where,
                              self.http_client if res.wants_http else None)
            )
        else:
            results = []
            fn = res.fn
            for row in range(n):
                try:
                    results.append(fn(**call_kwargs(row)))
                except Exception as exc:
                    raise DataError(f"{where(row)} raised {type(exc).__name__}: {exc}") from exc
        single = len(step.outputs) == 1
        for j, (feature, cid, dtype) in enumerate(step.outputs):
            picked = results if single else [_pick(r, j, len(step.outputs), where, row) for row, r in enumerate(results)]
            try:
                stored = [values.to_storage(dtype, r, where="") for r in picked]
            except DataError:
                # Find the offending row again, this time paying for a precise message.
                for row, r in enumerate(picked):
                    values.to_storage(dtype, r, where=f"{where(row)}, feature {feature!r}")
                raise
            series = pl.Series(cid, stored, dtype=values.storage_polars_type(dtype), strict=False)
            columns[cid] = series.cast(values.polars_type(dtype))
            dtypes[cid] = dtype


def _pick(result: object, j: int, n: int, where: Callable[[int], str], row: int) -> object:
    if result is None:
        return None
    if not isinstance(result, tuple) or len(result) != n:
        raise DataError(f"{where(row)}: returned {result!r}; it declares {n} outputs, so return a {n}-tuple")
    return result[j]


async def _gather_async(
    fn: Callable[..., object],
    calls: Sequence[dict[str, object]],
    where: Callable[[int], str],
    http_client: Callable[[], object] | None,
    chunk: int = 1000,
) -> list[object]:
    http = http_client() if http_client is not None else None
    out: list[object] = []
    try:
        for start in range(0, len(calls), chunk):
            batch = calls[start : start + chunk]
            if http is not None:
                batch = [{**kw, "http": http} for kw in batch]
            done = await asyncio.gather(*(fn(**kw) for kw in batch), return_exceptions=True)  # type: ignore[call-overload]
            for offset, value in enumerate(done):
                if isinstance(value, Exception):
                    raise DataError(f"{where(start + offset)} raised {type(value).__name__}: {value}") from value
            out.extend(done)
    finally:
        if http is not None:
            await http.aclose()  # type: ignore[attr-defined]
    return out
