"""Window aggregates for every spine row: the rule of ``semantics.windows``, vectorized.

Events (sorted by key and row order, ``semantics.windows.sorted_events``) and probes (key, t) are
given a shared key code; the kernel (``offline.window_kernel``) then runs one key partition at a
time — at most ``PARTITION_EVENTS`` events — over plain arrays, so memory stays bounded and a
distributed executor can run the same kernel on its own partitions. Exact states are rounded once
(floats), or read exactly (integers), as ``semantics.windows`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from parity.define.dtypes import DType
from parity.define.windows import Aggregate, WindowView
from parity.errors import DataError
from parity.offline import window_kernel as kernel
from parity.plan.nodes import WindowOutput
from parity.semantics import values
from parity.semantics import windows as rule
from parity.semantics.asof import PROBE_TIME
from parity.semantics.filters import compile_filter
from parity.semantics.ordering import EVENT

PARTITION_EVENTS = 4_000_000
_CODE = "__parity_key_code"
_QUERY = "__parity_query"


@dataclass
class _Partition:
    """One key partition's arrays: events [e0, e1) and the queries on its keys."""

    e0: int
    e1: int
    queries: np.ndarray  # positions in the probe frame
    block_start: np.ndarray  # per query, relative to e0
    block_end: np.ndarray
    t: np.ndarray


def window_values(view: WindowView, events: pl.DataFrame, probes: pl.DataFrame,
                  outputs: Sequence[WindowOutput]) -> dict[str, pl.Series]:
    """Each output's value for every probe (key columns + ``PROBE_TIME``), aligned with the probes."""
    keys = list(view.entity.keys)
    n_probes = probes.height
    if events.height:
        change = pl.any_horizontal(pl.col(k) != pl.col(k).shift(1) for k in keys).fill_null(True)
        events = events.with_columns(change.cum_sum().cast(pl.Int64).alias(_CODE) - 1)
        codes = events[_CODE].to_numpy()
        key_map = events.filter(change).select(*keys, _CODE)
        coded = probes.select(keys).with_row_index(_QUERY).join(key_map, on=keys, how="left", nulls_equal=False)
        coded = coded.sort(_QUERY)
        probe_codes = coded[_CODE].fill_null(-1).to_numpy()
    else:
        codes = np.zeros(0, np.int64)
        probe_codes = np.full(n_probes, -1, np.int64)
    t_all = probes[PROBE_TIME].cast(pl.Int64).to_numpy()
    partitions = _partitions(codes, probe_codes, t_all)
    aggregates = {a.name: a for a in view.features}
    needed = {o.feature for o in outputs}
    masks = _lane_masks([a for a in view.features if a.name in needed], events)
    context = _Context(events)
    # A probe without a key (a relationship whose target is unknown) has no entity: null, as online.
    keyless = probes.select(pl.any_horizontal(pl.col(k).is_null() for k in keys)).to_series()
    out: dict[str, pl.Series] = {}
    for output in outputs:
        aggregate = aggregates[output.feature]
        series = _one_output(view, aggregate, output, events, masks, partitions, n_probes, context)
        if keyless.any():
            series = series.to_frame().select(pl.when(keyless).then(None).otherwise(pl.col(series.name))).to_series()
        out[output.column_id] = series
    return out


class _Context:
    """What the outputs of one window read share: event arrays, each aggregate's prepared column
    (one per aggregate, whatever its widths) and each partition's ranges (one per width)."""

    def __init__(self, events: pl.DataFrame) -> None:
        self.ev = events[EVENT].to_numpy() if events.height else np.zeros(0, np.int64)
        self.vis = events[rule.VISIBLE].to_numpy() if events.height else np.zeros(0, np.int64)
        self.prepared: dict[int, dict[str, Any]] = {}
        self.ranges: dict[tuple[int, int | None], tuple[np.ndarray, np.ndarray]] = {}

    def range_of(self, index: int, part: _Partition, width: int | None) -> tuple[np.ndarray, np.ndarray]:
        found = self.ranges.get((index, width))
        if found is None:
            found = self.ranges[(index, width)] = kernel.ranges(
                part.block_start, part.block_end, self.ev[part.e0:part.e1], part.t, width or 0, width is None)
        return found


def _partitions(codes: np.ndarray, probe_codes: np.ndarray, t_all: np.ndarray) -> list[_Partition]:
    if codes.size == 0:
        return []
    n_codes = int(codes[-1]) + 1
    starts = np.searchsorted(codes, np.arange(n_codes + 1), side="left")
    parts: list[_Partition] = []
    has_key = probe_codes >= 0
    order = np.argsort(np.where(has_key, probe_codes, n_codes), kind="stable")
    order = order[has_key[order]]
    sorted_codes = probe_codes[order]
    code = 0
    while code < n_codes:
        end_code = int(np.searchsorted(starts, starts[code] + PARTITION_EVENTS, side="right")) - 1
        end_code = max(end_code, code + 1)
        end_code = min(end_code, n_codes)
        e0, e1 = int(starts[code]), int(starts[end_code])
        q0, q1 = np.searchsorted(sorted_codes, [code, end_code], side="left")
        queries = order[q0:q1]
        qc = probe_codes[queries]
        parts.append(_Partition(e0, e1, queries, starts[qc] - e0, starts[qc + 1] - e0, t_all[queries]))
        code = end_code
    return parts


def _lane_masks(aggregates: list[Aggregate], events: pl.DataFrame) -> dict[int, np.ndarray]:
    """Per aggregate (by id), which events it reads: its filter passes and its column is not null."""
    exprs: dict[str, pl.Expr] = {}
    for aggregate in aggregates:
        keep = compile_filter(aggregate.where) if aggregate.where is not None else pl.lit(True)
        if aggregate.aggregation.column is not None:
            keep = keep & pl.col(aggregate.aggregation.column).is_not_null()
        exprs[f"m{id(aggregate)}"] = keep
    if not events.height:
        return {id(a): np.zeros(0, np.bool_) for a in aggregates}
    frame = events.with_columns(**exprs)  # with_columns: a filter that is a literal still gets a row per event
    return {id(a): frame[f"m{id(a)}"].to_numpy() for a in aggregates}


def _one_output(view: WindowView, aggregate: Aggregate, output: WindowOutput, events: pl.DataFrame,
                masks: dict[int, np.ndarray], partitions: list[_Partition], n_probes: int,
                context: _Context) -> pl.Series:
    kind = aggregate.aggregation.kind
    column = aggregate.aggregation.column
    dtype = output.dtype
    col_dtype = view.columns[column] if column is not None else None
    mask_all = masks[id(aggregate)]
    prepared = context.prepared.get(id(aggregate))
    if prepared is None:
        prepared = context.prepared[id(aggregate)] = _prepare_column(
            kind, col_dtype, events[column] if column is not None else None, mask_all)
    results: list[tuple[np.ndarray, Any, int]] = []
    for index, part in enumerate(partitions):
        sl = slice(part.e0, part.e1)
        lo, hi = context.range_of(index, part, output.width)
        args = (lo, hi, context.vis[sl], part.t, mask_all[sl])
        results.append((part.queries, _kernel_values(kind, aggregate, col_dtype, prepared, part, args), part.e0))
    return _assemble(kind, dtype, results, n_probes, prepared, output)


def _prepare_column(kind: str, dtype: DType | None, series: pl.Series | None, mask: np.ndarray) -> dict[str, Any]:
    """Per-event arrays the kernel reads for this aggregate's column."""
    if series is None or dtype is None:
        return {}
    prepared: dict[str, Any] = {"series": series}
    is_float = dtype.name == "Float64"
    if kind in ("sum", "mean", "var", "std"):
        if is_float:
            x = series.fill_null(0.0).to_numpy().astype(np.float64)
            special = np.zeros(x.shape[0], np.int8)
            special[np.isnan(x)] = 1
            special[np.isposinf(x)] = 2
            special[np.isneginf(x)] = 3
            finite = special == 0
            f, e = np.frexp(np.where(finite, x, 0.0))
            mantissa = np.ldexp(f, 53).astype(np.int64)
            exponent = e.astype(np.int64) - 53
            nonzero = finite & (mantissa != 0) & mask
            prepared.update(special=special, mantissa=mantissa, exponent=exponent, nonzero=nonzero)
        else:
            prepared["ints"] = series.cast(pl.Int64).fill_null(0).to_numpy()
    elif kind in ("min", "max"):
        if is_float:
            x = series.fill_null(0.0).to_numpy().astype(np.float64)
            bits = np.where(np.isnan(x), np.float64(np.nan), x).view(np.int64)
            prepared["order"] = np.where(bits >= 0, bits, bits ^ np.int64(0x7FFFFFFFFFFFFFFF))
        else:
            prepared["order"] = series.cast(pl.Int64).fill_null(0).to_numpy()
    elif kind in ("count_distinct", "approx_count_distinct", "last_n_distinct"):
        canon = series.cast(values.storage_polars_type(dtype))  # dates and times as their integers, as online
        if is_float:
            canon = series.to_frame("v").select(
                pl.when(pl.col("v").is_nan()).then(float("nan")).when(pl.col("v") == 0.0).then(0.0)
                .otherwise(pl.col("v")).alias("v")).to_series()
        uniques = canon.unique(maintain_order=True)
        codes = canon.to_frame("v").join(uniques.to_frame("v").with_row_index("c"), on="v", how="left",
                                         nulls_equal=True)["c"].fill_null(0).cast(pl.Int64).to_numpy()
        prepared.update(codes=codes, uniques=uniques)
        if kind == "approx_count_distinct":
            hashes = [0 if v is None else rule.value_hash(v) for v in uniques.to_list()]  # a null is never read
            prepared["hashes"] = np.array(hashes, np.int64)[codes] if hashes else np.zeros(0, np.int64)
    elif kind == "approx_percentile":
        x = series.cast(pl.Float64).fill_null(0.0).to_numpy()
        finite = np.isfinite(x)
        prepared["finite"] = finite
        bits = np.abs(np.where(finite, x, 0.0)).view(np.int64)
        index = (bits >> (52 - rule.BUCKET_BITS)) + 1
        prepared["buckets"] = np.where(x == 0.0, 0, np.where(x > 0, index, -index)).astype(np.int64)
    return prepared


def _kernel_values(kind: str, aggregate: Aggregate, dtype: DType | None, prepared: dict[str, Any],
                   part: _Partition,
                   args: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> Any:
    lo, hi, vis, t, mask = args
    sl = slice(part.e0, part.e1)
    if kind == "count":
        return kernel.count(*args)
    if kind in ("sum", "mean", "var", "std"):
        squares = kind in ("var", "std")
        if dtype is not None and dtype.name == "Float64":
            exponent = prepared["exponent"][sl]
            nonzero = prepared["nonzero"][sl]
            base = int(exponent[nonzero].min()) if nonzero.any() else 0
            top = int(exponent[nonzero].max()) if nonzero.any() else 0
            shift = np.where(nonzero, exponent - base, 0)
            limbs = (top - base + 53 + 32) // 32 + 2
            sq_limbs = (2 * (top - base) + 106 + 32) // 32 + 2
            n, specials, sums, sqs = kernel.moments_float(lo, hi, vis, t, mask, prepared["mantissa"][sl],
                                                          shift, prepared["special"][sl], limbs, sq_limbs,
                                                          squares)
            return ("float", n, specials, sums, sqs, base)
        n, sums, sqs = kernel.moments_int(lo, hi, vis, t, mask, prepared["ints"][sl], squares)
        return ("int", n, None, sums, sqs, 0)
    if kind in ("min", "max"):
        return kernel.extreme(*args, prepared["order"][sl], kind == "max")
    if kind in ("first", "last"):
        return kernel.first_last(*args, kind == "last")
    codes: np.ndarray = prepared.get("codes", np.zeros(0, np.int64))
    if kind == "count_distinct":
        return kernel.distinct(*args, codes[sl], len(prepared["uniques"]))
    if kind == "last_n_distinct":
        n_values = aggregate.aggregation.n or 1
        return kernel.last_distinct(*args, codes[sl], len(prepared["uniques"]), n_values)
    if kind == "approx_count_distinct":
        exact = kernel.distinct(*args, codes[sl], len(prepared["uniques"]))
        estimates = exact.copy()
        hashes = prepared["hashes"][sl]
        for q in np.nonzero(exact > rule.EXACT_DISTINCT)[0]:
            registers = kernel.hll(int(lo[q]), int(hi[q]), vis, int(t[q]), mask, hashes, rule.HLL_P)
            estimates[q] = rule.hll_estimate(registers.tolist())
        return estimates
    if kind == "approx_percentile":
        quantile = aggregate.aggregation.quantile
        assert quantile is not None
        finite_mask = mask & prepared["finite"][sl]
        return kernel.kth_bucket(lo, hi, vis, t, finite_mask, prepared["buckets"][sl],
                                 quantile.numerator, quantile.denominator)
    raise DataError(f"unknown aggregation {kind!r}")


def _limbs_to_ints(limbs: np.ndarray) -> list[int]:
    negative, magnitude = kernel.normalize(limbs)
    raw = magnitude.astype("<u4")
    return [(-1 if neg else 1) * int.from_bytes(row.tobytes(), "little") for neg, row in zip(negative, raw)]


def _assemble(kind: str, dtype: DType, results: list[tuple[np.ndarray, Any, int]], n_probes: int,
              prepared: dict[str, Any], output: WindowOutput) -> pl.Series:
    name = output.column_id
    target = values.polars_type(dtype)
    if kind in ("count", "count_distinct", "approx_count_distinct"):
        full = np.zeros(n_probes, np.int64)
        for queries, got, _ in results:
            full[queries] = got
        return pl.Series(name, full, dtype=pl.Int64)
    if kind in ("sum", "mean", "var", "std"):
        return _numeric(kind, dtype, results, n_probes, name, output)
    if kind in ("min", "max", "first", "last"):
        index = np.full(n_probes, -1, np.int64)
        series = prepared["series"]
        assert isinstance(series, pl.Series)
        if not len(series):
            return pl.Series(name, [None] * n_probes, dtype=target)
        for queries, got, e0 in results:
            got_arr = np.asarray(got)
            index[queries] = np.where(got_arr >= 0, got_arr + e0, -1)
        picked = series.gather(pl.Series(np.where(index >= 0, index, 0))).to_frame("v").with_columns(
            pl.when(pl.Series(index >= 0)).then(pl.col("v")).otherwise(None).alias("v"))["v"]
        if kind in ("min", "max"):
            picked = rule.extreme_series(picked)
        return picked.cast(target).alias(name)
    if kind == "last_n_distinct":
        uniques = prepared["uniques"]
        assert isinstance(uniques, pl.Series)
        unique_list = uniques.to_list()
        lists: list[list[object]] = [[] for _ in range(n_probes)]
        for queries, got, _ in results:
            codes, found = got
            for q, row, c in zip(queries, codes, found):
                lists[int(q)] = [unique_list[int(code)] for code in row[:c]]
        return pl.Series(name, lists, dtype=values.storage_polars_type(dtype)).cast(target)
    if kind == "approx_percentile":
        out: list[float | None] = [None] * n_probes
        for queries, got, _ in results:
            buckets, found = got
            for q, b, f in zip(queries, buckets, found):
                if f:
                    out[int(q)] = rule.bucket_value(int(b))
        return pl.Series(name, out, dtype=pl.Float64)
    raise DataError(f"unknown aggregation {kind!r}")


def _rescale(value: int, bits: int) -> int:
    """value·2^bits, exactly (a negative ``bits`` only ever drops zero bits here)."""
    return value << bits if bits >= 0 else value >> -bits


def _numeric(kind: str, dtype: DType, results: list[tuple[np.ndarray, Any, int]], n_probes: int, name: str,
             output: WindowOutput) -> pl.Series:
    is_float_out = dtype.name == "Float64"
    out: np.ndarray = np.zeros(n_probes, np.float64 if is_float_out else np.int64)
    valid = np.full(n_probes, kind == "sum", np.bool_)  # an empty window sums to 0; the rest are null
    for queries, got, _ in results:
        form, n, specials, sums, sqs, base = got
        is_float = form == "float"
        if kind == "sum" and not is_float:
            for q, value in zip(queries, _limbs_to_ints(sums)):
                out[q] = rule.lower_sum((0, value, 0, 0, 0, 0), False, output.label)  # the one range rule
            valid[queries] = True
            continue
        if kind in ("sum", "mean"):
            divisor = np.maximum(n, 1) if kind == "mean" else np.ones_like(n)
            rounded = kernel.round_limbs(sums, base, divisor)
            if is_float:
                nan, pos, neg = specials[:, 0], specials[:, 1], specials[:, 2]
                rounded = np.where((nan > 0) | ((pos > 0) & (neg > 0)), np.nan,
                                   np.where(pos > 0, np.inf, np.where(neg > 0, -np.inf, rounded)))
            out[queries] = rounded
            valid[queries] = n > 0 if kind == "mean" else True
            continue
        # var / std: exact integers, per row
        sum_ints = _limbs_to_ints(sums)
        sq_ints = _limbs_to_ints(sqs)
        for j, q in enumerate(queries):
            special_row = (0, 0, 0) if specials is None else tuple(int(v) for v in specials[j])
            total, sumsq = sum_ints[j], sq_ints[j]
            if is_float:  # from units of 2^base to the canonical 2^-1074
                total = _rescale(total, rule.FLOAT_SHIFT + base)
                sumsq = _rescale(sumsq, 2 * (rule.FLOAT_SHIFT + base))
            state = (int(n[j]), total, sumsq, *special_row)
            spread = rule.lower_var(state, is_float) if kind == "var" else rule.lower_std(state, is_float)
            if spread is not None:
                out[q] = spread
                valid[q] = True
    series = pl.Series(name, out)
    return series.to_frame().select(pl.when(pl.Series(valid)).then(pl.col(name)).otherwise(None)).to_series()
