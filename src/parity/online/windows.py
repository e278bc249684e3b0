"""Window aggregates at request time, from the events the online store's window index holds.

The same rule as offline (``semantics.windows``): events visible at t with t − w < event time ≤ t,
in row order; each aggregate reads the events whose lane bit says they pass its filter and have a
value (decided once, at ingestion, by the one filter compiler); numbers from exact states,
rounded once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from parity.define.windows import Aggregate, WindowView
from parity.plan.nodes import WindowOutput
from parity.ports.online_store import OnlineStore, WindowEvent
from parity.semantics import window_state as state
from parity.semantics import windows as rule


def lane_bits(view: WindowView) -> dict[str, int]:
    """Each aggregate's bit in an event's lane mask (by the view's declared order)."""
    return {a.name: 1 << i for i, a in enumerate(view.features)}


def aggregate_value(view: WindowView, aggregate: Aggregate, width: int | None, bit: int,
                    events: Sequence[WindowEvent], t_us: int, columns: dict[str, int]) -> object:
    """One aggregate over one window of one key's events (already in row order)."""
    after, until = rule.bounds(t_us, width)
    kind = aggregate.aggregation.kind
    chosen = [e for e in events if e[1] <= until and (after is None or e[1] > after) and e[4] <= t_us and e[5] & bit]
    if kind == "count":
        return len(chosen)
    column = aggregate.aggregation.column
    assert column is not None
    position = columns[column]
    xs = [e[6][position] for e in chosen]
    is_float = view.columns[column].name == "Float64"
    if kind in ("sum", "mean", "var", "std"):
        moments = rule.Moments()
        for x in xs:
            moments.add(x, is_float)  # type: ignore[arg-type]
        state = moments.as_tuple()
        if kind == "sum":
            return rule.lower_sum(state, is_float, where=f"feature {aggregate.name!r}")
        if kind == "mean":
            return rule.lower_mean(state, is_float)
        return rule.lower_var(state, is_float) if kind == "var" else rule.lower_std(state, is_float)
    if kind in ("min", "max"):
        if not xs:
            return None
        keyed = [(rule.float_order_key(x) if is_float else x, x) for x in xs]  # type: ignore[arg-type]
        best = keyed[0]
        for k in keyed[1:]:
            if (k[0] > best[0]) if kind == "max" else (k[0] < best[0]):  # type: ignore[operator]
                best = k
        return best[1]
    if kind == "first":
        return xs[0] if xs else None
    if kind == "last":
        return xs[-1] if xs else None
    if kind == "count_distinct":
        return len({rule.canonical(x) for x in xs})
    if kind == "last_n_distinct":
        seen: list[object] = []
        found: set[object] = set()
        for x in reversed(xs):
            c = rule.canonical(x)
            if c not in found:
                found.add(c)
                seen.append(c)
                if len(seen) == aggregate.aggregation.n:
                    break
        return seen
    if kind == "approx_count_distinct":
        return rule.approx_distinct(xs)
    if kind == "approx_percentile":
        assert aggregate.aggregation.quantile is not None
        buckets = sorted(rule.bucket(float(x)) for x in xs if math.isfinite(float(x)))  # type: ignore[arg-type]
        return rule.percentile_of_buckets(buckets, aggregate.aggregation.quantile)
    raise ValueError(f"unknown aggregation {kind!r}")


def window_outputs(store: OnlineStore, table: str, view: WindowView, outputs: Sequence[WindowOutput],
                   keys: Sequence[tuple[object, ...]], t_us: int) -> dict[str, list[object]]:
    """Every output's value for every key at t.

    Count, sum, mean, var and std read two prefix states per width (``semantics.window_state``):
    one seek for t, one for each t − w — the same cost for a 30-day window as for a 10-minute one.
    That is exact when every event the key holds was visible by t (serving "now" always is); a
    key with events that became visible after t (a query of the past) is answered from its events
    in the window, filtered by visibility, as are the other aggregates.
    """
    aggregates = {a.name: a for a in view.features}
    lanes, lane_of = state.lanes_of(view)
    bits = lane_bits(view)
    columns = {c: j for j, c in enumerate(view.columns)}
    by_prefix = [o for o in outputs if aggregates[o.feature].aggregation.kind in state.PREFIX_KINDS]
    scanned = [o for o in outputs if o not in by_prefix]
    out: dict[str, list[object]] = {o.column_id: [] for o in outputs}
    times: list[int | None] = [t_us]
    slot: dict[int | None, int] = {}
    for o in by_prefix:
        if o.width not in slot:
            slot[o.width] = len(times)
            times.append(None if o.width is None else t_us - o.width)
    seeks = store.window_seek(table, keys, times) if by_prefix else [(None, [])] * len(keys)
    needs_events: list[tuple[object, ...]] = []
    for key, (max_vis, _) in zip(keys, seeks):
        if scanned or (max_vis is not None and max_vis > t_us):
            needs_events.append(key)
    widths = [o.width for o in (outputs if needs_events else scanned)]
    after = None if (None in widths or not widths) else t_us - max(w for w in widths if w is not None)
    events = dict(zip(needs_events, store.window_read(table, needs_events, after, t_us))) if needs_events else {}
    for key, (max_vis, blobs) in zip(keys, seeks):
        held = events.get(key, [])
        exact_prefix = max_vis is None or max_vis <= t_us
        high = state.decode(blobs[0], lanes) if by_prefix and exact_prefix else None
        for o in by_prefix:
            aggregate = aggregates[o.feature]
            if high is None:
                value = aggregate_value(view, aggregate, o.width, bits[o.feature], held, t_us, columns)
            else:
                low = None if o.width is None else state.decode(blobs[slot[o.width]], lanes)
                lane = lane_of[o.feature]
                value = state.lower(aggregate.aggregation.kind, state.difference(high, low)[lane],
                                    lanes[lane].is_float, where=f"feature {o.label!r}")
            out[o.column_id].append(value)
        for o in scanned:
            out[o.column_id].append(aggregate_value(view, aggregates[o.feature], o.width, bits[o.feature], held,
                                                    t_us, columns))
    return out
