"""Prefix states of a window index: how a window of count / sum / mean / var / std is read online
with a bounded number of reads, whatever its width.

Each event of a key, in row order, carries the exact state of every *prefix lane* over all of the
key's events up to and including it. A lane is one (filter, column) pair of the view's invertible
aggregates (count, sum, mean, var, std share it); its state is ``Moments`` (``semantics.windows``)
— exact integers, so the window (t − w, t] is exactly the state at the last event ≤ t minus the
state at the last event ≤ t − w: two seeks, then the same lowering as offline. An approx_percentile
lane's state is its bucket counts since the last checkpoint (``semantics.window_histograms``).

States are stored compactly: an integer that fits 64 bits as itself, a larger one (a sum of
doubles at the ·2^1074 scale) as (odd part, trailing zero bits) — that scale leaves hundreds of
zero bits that need not be stored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgpack

from parity.define.windows import WindowView
from parity.semantics import window_histograms as hist
from parity.semantics import windows as rule

PREFIX_KINDS = frozenset({"count", "sum", "mean", "var", "std"})
# Per lane: [n] for counts, [n, sum, sumsq, nan, +inf, -inf] for a column, a ``Histogram`` for a
# histogram lane (``semantics.window_histograms``).
State = list[Any]
_packb = msgpack.Packer(use_bin_type=True).pack


@dataclass
class Lane:
    column: int | None  # position of the column in the view's declared columns; None: a count
    bit: int  # the lane-mask bit of the events it reads
    is_float: bool
    squares: bool = False  # whether a var/std reads it (else Σx² is left at 0: it costs a big multiply)
    histogram: bool = False  # an approx_percentile lane: bucket counts (``semantics.window_histograms``)
    slot: int = -1  # a histogram lane's checkpoints: their slot in the window sets


def lanes_of(view: WindowView) -> tuple[list[Lane], dict[str, int]]:
    """The view's prefix lanes, and which lane each invertible aggregate and approx_percentile
    reads (percentiles of one filter and column share a histogram lane, whatever their quantile)."""
    columns = list(view.columns)
    lanes: list[Lane] = []
    seen: dict[tuple[object, ...], int] = {}
    of: dict[str, int] = {}
    for i, aggregate in enumerate(view.features):
        histogram = aggregate.aggregation.kind == "approx_percentile"
        if aggregate.aggregation.kind not in PREFIX_KINDS and not histogram:
            continue
        column = aggregate.aggregation.column
        ident = (histogram, None if aggregate.where is None else repr(aggregate.where.describe()), column)
        if ident not in seen:
            seen[ident] = len(lanes)
            lanes.append(Lane(None if column is None else columns.index(column), 1 << i,
                              column is not None and view.columns[column].name == "Float64",
                              histogram=histogram, slot=i if histogram else -1))
        if aggregate.aggregation.kind in ("var", "std"):
            lanes[seen[ident]].squares = True
        of[aggregate.name] = seen[ident]
    return lanes, of


def zero(lanes: Sequence[Lane]) -> State:
    return [hist.empty() if lane.histogram else [0] if lane.column is None else [0, 0, 0, 0, 0, 0]
            for lane in lanes]


def advance(state: State, lanes: Sequence[Lane], mask: int, payload: Sequence[object]) -> State:
    """The state after one more event (a new list; ``state`` is left as it was): ``Moments.add``,
    inlined — this runs once per event and lane on every ingest."""
    out = []
    for lane, s in zip(lanes, state):
        if not mask & lane.bit:
            out.append(s)
            continue
        if lane.column is None:
            out.append([s[0] + 1])
            continue
        x = payload[lane.column]
        if lane.histogram:
            out.append(hist.advance(s, x))
            continue
        n, total, sumsq, nan, pos_inf, neg_inf = s
        if lane.is_float:
            f = float(x)  # type: ignore[arg-type]
            if f != f:  # noqa: PLR0124 - NaN, the fastest test
                out.append([n + 1, total, sumsq, nan + 1, pos_inf, neg_inf])
                continue
            if f in (math.inf, -math.inf):
                out.append([n + 1, total, sumsq, nan, pos_inf + (f > 0), neg_inf + (f < 0)])
                continue
            exact = rule.exact_float(f)
        else:
            exact = int(x)  # type: ignore[call-overload]
        out.append([n + 1, total + exact, sumsq + exact * exact if lane.squares else sumsq, nan, pos_inf, neg_inf])
    return out


def checkpoints(lanes: Sequence[Lane], before: State, after: State) -> list[tuple[int, list[int]]]:
    """The histogram lanes an event made a checkpoint of: (slot, the packed counts to keep)."""
    return [(lane.slot, hist.pack(a.base)) for lane, b, a in zip(lanes, before, after)
            if lane.histogram and hist.is_checkpoint(b, a)]


def difference(high: State, low: State | None) -> State:
    """The window's state of the prefix lanes (a histogram lane's entry is ``high``'s: its window
    also needs the checkpoints, ``online.windows``)."""
    if low is None:
        return high
    return [h if h.__class__ is hist.Histogram else [a - b for a, b in zip(h, lo)] for h, lo in zip(high, low)]


_SMALL = 2**63


def _pack_int(x: int) -> object:
    if -_SMALL <= x < _SMALL:
        return x  # counts, and the sums of integers: as they are
    zeros = (x & -x).bit_length() - 1
    odd = x >> zeros
    return [odd if -(2**63) <= odd < 2**63 else odd.to_bytes((odd.bit_length() + 8) // 8, "little", signed=True),
            zeros]


def _unpack_int(packed: object) -> int:
    if isinstance(packed, int):
        return packed
    pair = cast(list[object], packed)
    odd, zeros = pair[0], cast(int, pair[1])
    value = int.from_bytes(odd, "little", signed=True) if isinstance(odd, bytes) else cast(int, odd)
    return value << zeros


def encode(state: State) -> bytes:
    # This runs once per event on every ingest, so the lanes' shapes are taken apart by hand: a
    # count lane ([n]) and a column lane's counts (n, NaN, ±inf) are counts of events, always in
    # 64 bits; only a column lane's sums (Σx, Σx²) may need ``_pack_int``, tested inline.
    out: list[object] = []
    for s in state:
        if s.__class__ is hist.Histogram:
            out.append(hist.encode(s))
        elif len(s) == 1:
            out.append(s)
        else:
            n, total, sumsq, nan, pos_inf, neg_inf = s
            out.append([n, total if -_SMALL <= total < _SMALL else _pack_int(total),
                        sumsq if -_SMALL <= sumsq < _SMALL else _pack_int(sumsq), nan, pos_inf, neg_inf])
    return _packb(out)


def decode(blob: bytes | None, lanes: Sequence[Lane]) -> State:
    """An event's stored state (a histogram lane's delta without its checkpoint: ``hist.with_base``)."""
    if blob is None:
        return zero(lanes)
    return [hist.decode(s) if lane.histogram else [v if v.__class__ is int else _unpack_int(v) for v in s]
            for s, lane in zip(msgpack.unpackb(blob), lanes)]


def lower(kind: str, lane_state: Sequence[int], is_float: bool, feature: str = "") -> object:
    """An invertible aggregate's value from its lane's window state (``semantics.windows``)."""
    if kind == "count":
        return lane_state[0]
    if kind == "sum":
        return rule.lower_sum(lane_state, is_float, feature)
    if kind == "mean":
        return rule.lower_mean(lane_state, is_float)
    if kind == "var":
        return rule.lower_var(lane_state, is_float)
    return rule.lower_std(lane_state, is_float)
