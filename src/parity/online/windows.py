"""Window aggregates at request time, from the online store's window index.

The same rule as offline (``semantics.windows``): events visible at t with t − w < event time ≤ t,
in row order; each aggregate reads the events whose lane bit says they pass its filter and have a
value (decided once, at ingestion, by the one filter compiler); numbers from exact states,
rounded once. When every event of the key was visible by t, count/sum/mean/var/std come from
exact prefix states (``semantics.window_state``), min/max/first/last/distinct from window sets
(``semantics.window_sets``) and approx_percentile from bucket counts (checkpoints and deltas,
``semantics.window_histograms``); keys with events visible only after t are computed from the
events in the window (``aggregate_value``), as offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from parity.define.windows import Aggregate, WindowView
from parity.plan.nodes import WindowOutput
from parity.ports.online_store import OnlineStore, WindowEvent
from parity.semantics import window_histograms as hist
from parity.semantics import window_sets as sets
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
            return rule.lower_sum(state, is_float, aggregate.name)
        if kind == "mean":
            return rule.lower_mean(state, is_float)
        return rule.lower_var(state, is_float) if kind == "var" else rule.lower_std(state, is_float)
    if kind in ("min", "max"):
        if not xs:
            return None
        keyed = [(rule.order_key(x, is_float), x) for x in xs]
        best = keyed[0]
        for k in keyed[1:]:
            if (k[0] > best[0]) if kind == "max" else (k[0] < best[0]):
                best = k
        return rule.extreme(best[1])
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
        buckets = sorted(b for b in map(rule.percentile_bucket, xs) if b is not None)
        return rule.percentile_of_buckets(buckets, aggregate.aggregation.quantile)
    raise ValueError(f"unknown aggregation {kind!r}")


class _Compiled:
    """What a window read of these outputs needs, worked out once per plan step."""

    def __init__(self, view: WindowView, outputs: Sequence[WindowOutput]) -> None:
        self.aggregates = {a.name: a for a in view.features}
        self.lanes, lane_of = state.lanes_of(view)
        self.bits = lane_bits(view)
        self.columns = {c: j for j, c in enumerate(view.columns)}
        self.widths: list[int | None] = []  # one seek each, after the one for t
        self.by_prefix: list[tuple[str, str, int, int, bool, str]] = []  # (column id, kind, slot, lane, float, label)
        self.by_set: list[tuple[WindowOutput, str, int, str, int]] = []  # (output, kind, set slot, mode, n)
        self.scanned: list[WindowOutput] = []  # read from the events whatever the key holds
        # approx_percentile: (column id, lane, width's seek or None, its checkpoint asks, quantile)
        self.by_histogram: list[tuple[str, int, int | None, int, int | None, Fraction]] = []
        self.checkpoint_asks: list[tuple[int, int]] = []  # (slot, width): the last checkpoint ≤ t − w
        slot_of = {view.features[s.id].name: s.id for s in sets.slots_of(view)}
        for o in outputs:
            aggregation = self.aggregates[o.feature].aggregation
            kind = aggregation.kind
            if kind in sets.KINDS:
                self.by_set.append((o, kind, slot_of[o.feature], sets.KINDS[kind][1], aggregation.n or 0))
                continue
            if kind not in state.PREFIX_KINDS and kind != "approx_percentile":
                self.scanned.append(o)
                continue
            if o.width not in self.widths:
                self.widths.append(o.width)
            lane = lane_of[o.feature]
            if kind == "approx_percentile":
                assert aggregation.quantile is not None
                slot = self.lanes[lane].slot
                low = None if o.width is None else self._checkpoint_ask(slot, o.width)
                self.by_histogram.append((o.column_id, lane, None if o.width is None else 1 + self.widths.index(o.width),
                                          self._checkpoint_ask(slot, 0), low, aggregation.quantile))
                continue
            self.by_prefix.append((o.column_id, kind, 1 + self.widths.index(o.width), lane, self.lanes[lane].is_float,
                                   o.label))
        self.by_seek = bool(self.by_prefix or self.by_set or self.by_histogram)
        self.outputs = list(outputs)
        self.scanned_ids = {o.column_id for o in self.scanned}
        scan_widths = [o.width for o in self.scanned]
        all_widths = [o.width for o in outputs]
        self.scan_reach = _reach(scan_widths)
        self.all_reach = _reach(all_widths)


    def _checkpoint_ask(self, slot: int, width: int) -> int:
        """The index of the ask for the slot's last checkpoint at or before t − width (0: t)."""
        if (slot, width) not in self.checkpoint_asks:
            self.checkpoint_asks.append((slot, width))
        return self.checkpoint_asks.index((slot, width))


def _reach(widths: Sequence[int | None]) -> int | None | bool:
    """How far back a scan must read: a width, None for everything, False for no scan."""
    if not widths:
        return False
    return None if None in widths else max(w for w in widths if w is not None)


_compiled: dict[tuple[int, int], _Compiled] = {}


def window_outputs(store: OnlineStore, table: str, view: WindowView, outputs: Sequence[WindowOutput],
                   keys: Sequence[tuple[object, ...]], t_us: int) -> dict[str, list[object]]:
    """Every output's value for every key at t.

    For a key whose every event was visible by t (serving "now" always is), the window is a suffix
    of its events and each output costs a bounded number of reads, the same for a 30-day window as
    for a 10-minute one: count, sum, mean, var and std two prefix states per width
    (``semantics.window_state``: one seek for t, one for each t − w); min, max, first, last and the
    distinct aggregates one descent into their set (``semantics.window_sets``; then, for
    count_distinct on SQLite and approx_count_distinct, the window's distinct members);
    approx_percentile the prefix seeks' deltas and two checkpoints (``semantics.window_histograms``).
    A key with events that became visible after t (a query of the past) is answered from its events
    in the window, filtered by visibility.
    """
    plan = _compiled.get((id(view), id(outputs)))
    if plan is None or plan.outputs != list(outputs):
        plan = _compiled[(id(view), id(outputs))] = _Compiled(view, outputs)
    lanes = plan.lanes
    out: dict[str, list[object]] = {o.column_id: [] for o in outputs}
    times = [t_us, *(None if w is None else t_us - w for w in plan.widths)]
    asks = [(slot, mode, None if o.width is None else t_us - o.width, n) for o, _, slot, mode, n in plan.by_set]
    asks += [(slot, "at", t_us - width, 0) for slot, width in plan.checkpoint_asks]
    seeks = store.window_seek(table, keys, times, asks) if plan.by_seek else [(None, [], [])] * len(keys)
    checkpoints_from = len(plan.by_set)
    # A key all of whose events were visible by t: its window is a suffix of its events.
    suffix = [max_vis is None or max_vis <= t_us for max_vis, _, _ in seeks]
    needs_events = [key for key, whole in zip(keys, suffix) if plan.scanned or not whole]
    events: dict[tuple[object, ...], list[WindowEvent]] = {}
    if needs_events:
        reach = plan.all_reach if not all(suffix) else plan.scan_reach
        after = None if reach is None or reach is False else t_us - int(reach)
        events = dict(zip(needs_events, store.window_read(table, needs_events, after, t_us)))
    aggregates, bits, columns = plan.aggregates, plan.bits, plan.columns
    for key, whole, (_, blobs, found) in zip(keys, suffix, seeks):
        held_events = events.get(key, [])
        if whole:
            stated = [state.decode(blob, lanes) for blob in blobs] if plan.by_prefix or plan.by_histogram else []
            if plan.by_prefix:
                high = stated[0]
                windows = [high] + [state.difference(high, None if w is None else low)
                                    for w, low in zip(plan.widths, stated[1:])]
                for cid, kind, slot, lane, is_float, label in plan.by_prefix:
                    out[cid].append(state.lower(kind, windows[slot][lane], is_float, label))
            if plan.by_set:
                for (o, kind, _, _, _), value in zip(plan.by_set, found):
                    out[o.column_id].append(sets.lower(kind, value))
            if plan.by_histogram:
                # the counts up to t minus those up to t − w: each a checkpoint plus an event's delta
                checkpoints = found[checkpoints_from:]
                for cid, lane, seek, at_t, at_low, quantile in plan.by_histogram:
                    low = None if seek is None or at_low is None else (checkpoints[at_low], stated[seek][lane].delta)
                    out[cid].append(hist.window_percentile((checkpoints[at_t], stated[0][lane].delta),  # type: ignore[arg-type]
                                                           low, quantile))  # type: ignore[arg-type]
        else:
            for o in plan.outputs:
                if o.column_id not in plan.scanned_ids:
                    out[o.column_id].append(aggregate_value(view, aggregates[o.feature], o.width, bits[o.feature],
                                                            held_events, t_us, columns))
        for o in plan.scanned:
            out[o.column_id].append(aggregate_value(view, aggregates[o.feature], o.width, bits[o.feature],
                                                    held_events, t_us, columns))
    return out
